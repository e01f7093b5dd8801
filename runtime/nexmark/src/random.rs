//! `java.util.Random`, bit for bit: the reference Nexmark generator seeds one per
//! event with the event id, so numeric fields match it for the same event number.

#[derive(Clone, Debug)]
pub struct JavaRandom {
    seed: i64,
}

const MULTIPLIER: i64 = 0x5DEECE66D;
const MASK: i64 = (1 << 48) - 1;

impl JavaRandom {
    pub fn new(seed: i64) -> Self {
        JavaRandom { seed: (seed ^ MULTIPLIER) & MASK }
    }

    #[inline]
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = (self.seed.wrapping_mul(MULTIPLIER).wrapping_add(0xB)) & MASK;
        (self.seed >> (48 - bits)) as i32
    }

    pub fn next_int(&mut self) -> i32 {
        self.next(32)
    }

    /// Uniform in `[0, bound)`; `bound` must be positive.
    pub fn next_int_bounded(&mut self, bound: i32) -> i32 {
        assert!(bound > 0, "bound must be positive");
        if bound & bound.wrapping_neg() == bound {
            return ((bound as i64 * self.next(31) as i64) >> 31) as i32;
        }
        loop {
            let bits = self.next(31);
            let val = bits % bound;
            if bits.wrapping_sub(val).wrapping_add(bound - 1) >= 0 {
                return val;
            }
        }
    }

    pub fn next_long(&mut self) -> i64 {
        ((self.next(32) as i64) << 32).wrapping_add(self.next(32) as i64)
    }

    pub fn next_double(&mut self) -> f64 {
        (((self.next(26) as i64) << 27) + self.next(27) as i64) as f64 * (1.0 / (1i64 << 53) as f64)
    }

    /// The generator's `nextLong(random, n)`: uniform-ish in `[0, n)`.
    pub fn next_long_bounded(&mut self, n: i64) -> i64 {
        if n < i32::MAX as i64 {
            self.next_int_bounded(n.max(1) as i32) as i64
        } else {
            (self.next_long() % n).abs()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_util_random() {
        // values printed by OpenJDK: new Random(42).nextInt(), then nextInt(10) x5 from a fresh Random(42)
        assert_eq!(JavaRandom::new(42).next_int(), -1170105035);
        let mut r = JavaRandom::new(42);
        let v: Vec<i32> = (0..5).map(|_| r.next_int_bounded(10)).collect();
        assert_eq!(v, vec![0, 3, 8, 4, 0]);
        let mut r = JavaRandom::new(0);
        assert_eq!(r.next_int(), -1155484576);
    }
}
