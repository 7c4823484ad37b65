//! Hash maps keyed by ids the server chooses itself (connection, session and socket ids):
//! no peer picks those keys, so a multiplicative mix replaces the default SipHash, whose
//! resistance to chosen keys they do not need. The fan-out path looks players up in these
//! maps once or more per packet.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hasher for server-chosen integer ids. See the module docs.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` keyed by server-chosen ids, hashed with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_the_buckets() {
        let buckets = 1024u64;
        let mut used = std::collections::HashSet::new();
        for id in 0..buckets {
            let mut h = IdHasher::default();
            h.write_u64(id);
            // hashbrown picks buckets from the high bits (h2) and low bits (h1).
            used.insert(h.finish() % buckets);
        }
        assert!(
            used.len() > (buckets as usize) / 2,
            "{} buckets",
            used.len()
        );
    }
}
