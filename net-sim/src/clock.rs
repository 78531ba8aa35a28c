//! Each member's own clock: `local = offset + (1 + drift) * global`, kept monotonic.

/// One member's clock. `local(g) = offset + g + floor(g * ppb / 1e9)`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Clock {
    offset: i128,
    /// Drift in parts per billion.
    ppb: i64,
    /// The last local reading handed out: readings never go back.
    last: u64,
    /// Whether the clock ever stepped (an offset change or a jump).
    pub(crate) stepped: bool,
}

const BILLION: i128 = 1_000_000_000;

impl Clock {
    /// Whether this clock is the global clock (the fast path).
    #[inline]
    fn is_global(&self) -> bool {
        self.offset == 0 && self.ppb == 0
    }

    fn raw(&self, global: u64) -> i128 {
        let g = i128::from(global);
        self.offset + g + (g * i128::from(self.ppb)).div_euclid(BILLION)
    }

    /// The member's reading at global time `global`.
    #[inline]
    pub(crate) fn local(&mut self, global: u64) -> u64 {
        let raw = if self.is_global() { global } else { clamp(self.raw(global)) };
        self.last = self.last.max(raw);
        self.last
    }

    /// The earliest global time at which the member's reading reaches `local`.
    pub(crate) fn global_at(&self, local: u64) -> u64 {
        if self.is_global() {
            return local;
        }
        let target = i128::from(local);
        // Invert approximately, then step to the exact earliest instant.
        let mut g = ((target - self.offset) * BILLION).div_euclid(BILLION + i128::from(self.ppb)).max(0);
        while g > 0 && self.raw(to_u64(g - 1)) >= target {
            g -= 1;
        }
        while self.raw(to_u64(g)) < target && g < i128::from(u64::MAX) {
            g += 1;
        }
        to_u64(g)
    }

    /// Sets the drift from `now` on, without a step in the reading.
    pub(crate) fn set_drift(&mut self, now: u64, ppm: f64) {
        let before = self.raw(now);
        self.ppb = ppm_to_ppb(ppm);
        let g = i128::from(now);
        self.offset = before - g - (g * i128::from(self.ppb)).div_euclid(BILLION);
    }

    /// Sets the offset (a step).
    pub(crate) fn set_offset(&mut self, offset: i64) {
        self.offset = i128::from(offset);
        self.stepped = true;
    }

    /// Steps the clock by `by` nanoseconds.
    pub(crate) fn jump(&mut self, by: i64) {
        self.offset += i128::from(by);
        self.stepped = true;
    }

    /// The drift in parts per million.
    pub(crate) fn drift_ppm(&self) -> f64 {
        self.ppb as f64 / 1000.0
    }
}

fn ppm_to_ppb(ppm: f64) -> i64 {
    let ppb = (ppm * 1000.0).round();
    // A drift of -100% or beyond would stop or reverse the clock.
    ppb.clamp(-999_999_999.0, 1e12) as i64
}

fn clamp(x: i128) -> u64 {
    u64::try_from(x.max(0)).unwrap_or(u64::MAX)
}

fn to_u64(x: i128) -> u64 {
    clamp(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_clock_is_identity() {
        let mut c = Clock::default();
        assert_eq!(c.local(12_345), 12_345);
        assert_eq!(c.global_at(99), 99);
    }

    #[test]
    fn drift_scales_and_inverts_exactly() {
        let mut c = Clock::default();
        c.set_drift(0, 1000.0); // 0.1 % fast
        assert_eq!(c.local(1_000_000_000), 1_001_000_000);
        let g = c.global_at(300_000_000);
        assert!(c.raw(g) >= 300_000_000 && c.raw(g - 1) < 300_000_000);
        assert_eq!(g, 299_700_300);
        c.set_drift(1_000_000_000, -500.0);
        // No step at the change.
        assert_eq!(c.local(1_000_000_000), 1_001_000_000);
        assert_eq!(c.local(2_000_000_000), 1_001_000_000 + 999_500_000);
    }

    #[test]
    fn backward_jump_holds_the_reading() {
        let mut c = Clock::default();
        assert_eq!(c.local(1_000), 1_000);
        c.jump(-500);
        assert_eq!(c.local(1_200), 1_000);
        assert_eq!(c.local(1_600), 1_100);
        c.jump(10_000);
        assert_eq!(c.local(1_600), 11_100);
        assert!(c.stepped);
    }
}
