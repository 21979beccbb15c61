//! Reed-Solomon stripes: cutting a stripe of object bytes into `k` data
//! shards plus `m` parity shards, and getting the bytes back from any `k`
//! of them.
//!
//! Pure arithmetic over byte buffers, no I/O: the write path feeds it one
//! stripe buffer at a time, the read path and repair hand it whatever shards
//! they could fetch. Shard files and placement live elsewhere.

use std::ops::Range;

use reed_solomon_erasure::galois_8::ReedSolomon;

/// The largest number of data shards a scheme may have.
pub const MAX_DATA_SHARDS: usize = 16;

/// The largest number of parity shards a scheme may have.
pub const MAX_PARITY_SHARDS: usize = 8;

/// Width of the column slices the codec works on. Coding every shard's
/// `[off..off + COLUMN_BYTES]` in turn keeps the working set of a 4+2 or
/// 10+4 stripe in cache; measured nearly twice as fast as coding whole
/// 1 MiB shards.
const COLUMN_BYTES: usize = 64 * 1024;

/// Errors of encoding and decoding stripes.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// The scheme is outside what we support.
    #[error(
        "invalid erasure scheme {data}+{parity}: data shards must be 1..={MAX_DATA_SHARDS}, \
         parity shards 1..={MAX_PARITY_SHARDS}"
    )]
    InvalidScheme {
        /// Data shards asked for.
        data: usize,
        /// Parity shards asked for.
        parity: usize,
    },
    /// Fewer than `k` shards of the stripe are present: it cannot be rebuilt.
    #[error("only {have} shards of the stripe are present, {need} are needed")]
    TooFewShards {
        /// Shards present.
        have: usize,
        /// Shards needed (the scheme's data shard count).
        need: usize,
    },
    /// The shard list does not have one slot per shard of the scheme.
    #[error("got {have} shard slots, the scheme has {expected} shards")]
    ShardCount {
        /// Slots given.
        have: usize,
        /// Shards in the scheme.
        expected: usize,
    },
    /// Present shards have unequal lengths, or not the length the stripe
    /// size implies.
    #[error("shard size: {0}")]
    ShardSize(String),
    /// The Reed-Solomon library refused; our own checks should have caught
    /// this first.
    #[error("reed-solomon: {0}")]
    Codec(#[from] reed_solomon_erasure::Error),
}

/// A Reed-Solomon scheme of `k` data and `m` parity shards over GF(2^8).
///
/// Cheap to share: `encode` and `decode` take `&self`, so one codec per
/// scheme can serve every upload and read (the library caches decode
/// matrices internally).
#[derive(Clone)]
pub struct Codec {
    data: usize,
    parity: usize,
    rs: ReedSolomon,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec({}+{})", self.data, self.parity)
    }
}

impl Codec {
    /// A codec for `data` data shards and `parity` parity shards: data in
    /// `1..=16`, parity in `1..=8`.
    pub fn new(data: usize, parity: usize) -> Result<Codec, ErasureError> {
        if !(1..=MAX_DATA_SHARDS).contains(&data) || !(1..=MAX_PARITY_SHARDS).contains(&parity) {
            return Err(ErasureError::InvalidScheme { data, parity });
        }
        let rs = ReedSolomon::new(data, parity)?;
        Ok(Codec { data, parity, rs })
    }

    /// `k`, the number of data shards.
    pub fn data_shards(&self) -> usize {
        self.data
    }

    /// `m`, the number of parity shards.
    pub fn parity_shards(&self) -> usize {
        self.parity
    }

    /// `k + m`, the number of shards of every stripe.
    pub fn total_shards(&self) -> usize {
        self.data + self.parity
    }

    /// Length of each shard of a stripe holding `stripe_bytes` bytes:
    /// `ceil(stripe_bytes / k)` (0 for 0).
    pub fn shard_len(&self, stripe_bytes: usize) -> usize {
        stripe_bytes.div_ceil(self.data)
    }

    /// Cuts `stripe` into `k` equal data shards (the last zero-padded) and
    /// computes the `m` parity shards. Returns `k + m` shards, data first,
    /// each `shard_len(stripe.len())` long.
    pub fn encode(&self, stripe: &[u8]) -> Result<Vec<Vec<u8>>, ErasureError> {
        let len = self.shard_len(stripe.len());
        let mut shards: Vec<Vec<u8>> = Vec::with_capacity(self.total_shards());
        for i in 0..self.data {
            let start = (i * len).min(stripe.len());
            let end = ((i + 1) * len).min(stripe.len());
            let mut shard = Vec::with_capacity(len);
            shard.extend_from_slice(&stripe[start..end]);
            shard.resize(len, 0);
            shards.push(shard);
        }
        shards.resize_with(self.total_shards(), || vec![0; len]);

        let (data, parity) = shards.split_at_mut(self.data);
        for cols in columns(len) {
            let data_cols: Vec<&[u8]> = data.iter().map(|s| &s[cols.clone()]).collect();
            let mut parity_cols: Vec<&mut [u8]> =
                parity.iter_mut().map(|s| &mut s[cols.clone()]).collect();
            self.rs.encode_sep(&data_cols, &mut parity_cols)?;
        }
        Ok(shards)
    }

    /// Rebuilds the stripe's original bytes (the first `stripe_bytes` bytes
    /// of the concatenated data shards) from any `k` present shards.
    ///
    /// `shards` has one slot per shard of the scheme, `None` for a missing
    /// one. Only missing data shards are computed; with every data shard
    /// present no coding happens at all.
    pub fn decode(
        &self,
        mut shards: Vec<Option<Vec<u8>>>,
        stripe_bytes: usize,
    ) -> Result<Vec<u8>, ErasureError> {
        let len = self.shard_len(stripe_bytes);
        self.check_shards(&shards, Some(len))?;
        self.rebuild(&mut shards, true)?;

        let mut out = Vec::with_capacity(stripe_bytes);
        for shard in shards.iter().take(self.data).flatten() {
            let take = (stripe_bytes - out.len()).min(shard.len());
            out.extend_from_slice(&shard[..take]);
        }
        if out.len() != stripe_bytes {
            // rebuild fills every data slot, so this means a bug, not bad input.
            return Err(ErasureError::ShardSize(format!(
                "rebuilt {} of {stripe_bytes} stripe bytes",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Rebuilds every missing shard (data and parity) in place, for repair.
    /// Present shards must all have the same length. On error `shards` is
    /// left as it was.
    pub fn reconstruct_all(&self, shards: &mut [Option<Vec<u8>>]) -> Result<(), ErasureError> {
        self.check_shards(shards, None)?;
        self.rebuild(shards, false)
    }

    /// Checks the slot count, the lengths of present shards (against
    /// `expected_len`, or against each other when it is unknown) and that at
    /// least `k` are present.
    fn check_shards(
        &self,
        shards: &[Option<Vec<u8>>],
        expected_len: Option<usize>,
    ) -> Result<(), ErasureError> {
        if shards.len() != self.total_shards() {
            return Err(ErasureError::ShardCount {
                have: shards.len(),
                expected: self.total_shards(),
            });
        }
        let mut want = expected_len;
        let mut have = 0;
        for (i, shard) in shards.iter().enumerate() {
            let Some(shard) = shard else { continue };
            have += 1;
            match want {
                None => want = Some(shard.len()),
                Some(len) if len != shard.len() => {
                    return Err(ErasureError::ShardSize(match expected_len {
                        Some(_) => format!(
                            "shard {i} is {} bytes, the stripe's shards are {len}",
                            shard.len()
                        ),
                        None => format!(
                            "shard {i} is {} bytes, earlier shards are {len}",
                            shard.len()
                        ),
                    }));
                }
                Some(_) => {}
            }
        }
        if have < self.data {
            return Err(ErasureError::TooFewShards {
                have,
                need: self.data,
            });
        }
        Ok(())
    }

    /// Fills the missing data shards (and, unless `data_only`, the missing
    /// parity shards) of a checked shard list, column slice by column slice.
    fn rebuild(&self, shards: &mut [Option<Vec<u8>>], data_only: bool) -> Result<(), ErasureError> {
        let wanted = if data_only { self.data } else { shards.len() };
        let targets: Vec<usize> = (0..wanted).filter(|&i| shards[i].is_none()).collect();
        if targets.is_empty() {
            return Ok(());
        }
        let len = shards.iter().flatten().map(Vec::len).next().unwrap_or(0);
        let present: Vec<bool> = shards.iter().map(Option::is_some).collect();
        for &i in &targets {
            shards[i] = Some(vec![0; len]);
        }

        let mut result = Ok(());
        for cols in columns(len) {
            // Missing shards we do not rebuild (parity in `data_only` mode)
            // are passed as empty, absent slices: the library never touches them.
            let mut slices: Vec<(&mut [u8], bool)> = shards
                .iter_mut()
                .zip(&present)
                .map(|(shard, &present)| match shard {
                    Some(s) => (&mut s[cols.clone()], present),
                    None => (&mut [][..], false),
                })
                .collect();
            result = if data_only {
                self.rs.reconstruct_data(&mut slices)
            } else {
                self.rs.reconstruct(&mut slices)
            };
            if result.is_err() {
                break;
            }
        }
        if let Err(e) = result {
            for &i in &targets {
                shards[i] = None;
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// The column slices `[off..off + COLUMN_BYTES]` covering shards of `len`
/// bytes; none for empty shards (the library refuses empty slices, and there
/// is nothing to code).
fn columns(len: usize) -> impl Iterator<Item = Range<usize>> {
    (0..len)
        .step_by(COLUMN_BYTES)
        .map(move |off| off..(off + COLUMN_BYTES).min(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    const SCHEMES: [(usize, usize); 4] = [(1, 1), (4, 2), (10, 4), (16, 8)];

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut v = vec![0u8; len];
        rng.fill(&mut v[..]);
        v
    }

    fn sizes(k: usize) -> Vec<usize> {
        let col = COLUMN_BYTES;
        vec![0, 1, k - 1, k, col - 1, col, col + 1, 3 * col + 17]
    }

    fn present(shards: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
        shards.iter().cloned().map(Some).collect()
    }

    #[test]
    fn scheme_validation() {
        for (k, m) in [(0, 1), (1, 0), (17, 1), (1, 9), (0, 0), (100, 100)] {
            assert!(
                matches!(Codec::new(k, m), Err(ErasureError::InvalidScheme { data, parity }) if data == k && parity == m),
                "{k}+{m} accepted"
            );
        }
        for (k, m) in [(1, 1), (16, 8), (4, 2), (16, 1), (1, 8)] {
            let c = Codec::new(k, m).unwrap();
            assert_eq!(
                (c.data_shards(), c.parity_shards(), c.total_shards()),
                (k, m, k + m)
            );
        }
    }

    #[test]
    fn shard_len_rounds_up() {
        let c = Codec::new(4, 2).unwrap();
        assert_eq!(
            [0, 1, 3, 4, 5, 8, 9].map(|n| c.shard_len(n)),
            [0, 1, 1, 1, 2, 2, 3]
        );
    }

    #[test]
    fn round_trip_all_schemes_and_sizes() {
        for (k, m) in SCHEMES {
            let codec = Codec::new(k, m).unwrap();
            for size in sizes(k) {
                let stripe = random_bytes(size, (k * 1000 + size) as u64);
                let shards = codec.encode(&stripe).unwrap();
                assert_eq!(shards.len(), k + m);
                assert!(shards.iter().all(|s| s.len() == codec.shard_len(size)));
                let joined: Vec<u8> = shards[..k].concat();
                assert_eq!(
                    &joined[..size],
                    &stripe[..],
                    "{k}+{m} size {size}: data shards"
                );
                assert!(joined[size..].iter().all(|&b| b == 0), "padding is zero");

                assert_eq!(codec.decode(present(&shards), size).unwrap(), stripe);

                // Lose the first m shards (data when k >= m): parity must carry them.
                let mut lossy = present(&shards);
                lossy.iter_mut().take(m).for_each(|s| *s = None);
                assert_eq!(
                    codec.decode(lossy, size).unwrap(),
                    stripe,
                    "{k}+{m} size {size}: decode without the first {m} shards"
                );
            }
        }
    }

    #[test]
    fn every_erasure_of_up_to_m_shards_decodes_4_2() {
        let codec = Codec::new(4, 2).unwrap();
        let n = codec.total_shards();
        for size in sizes(4) {
            let stripe = random_bytes(size, size as u64);
            let shards = codec.encode(&stripe).unwrap();
            for mask in 0u32..(1 << n) {
                if mask.count_ones() as usize > codec.parity_shards() {
                    continue;
                }
                let input: Vec<Option<Vec<u8>>> = (0..n)
                    .map(|i| (mask & (1 << i) == 0).then(|| shards[i].clone()))
                    .collect();
                assert_eq!(
                    codec.decode(input.clone(), size).unwrap(),
                    stripe,
                    "size {size}, erased {mask:06b}"
                );
                let mut repaired = input;
                codec.reconstruct_all(&mut repaired).unwrap();
                assert_eq!(
                    repaired,
                    present(&shards),
                    "size {size}, repair of {mask:06b}"
                );
            }
        }
    }

    #[test]
    fn too_many_erasures_is_too_few_shards() {
        for (k, m) in SCHEMES {
            let codec = Codec::new(k, m).unwrap();
            let stripe = random_bytes(1000, 7);
            let shards = codec.encode(&stripe).unwrap();
            let mut input = present(&shards);
            input
                .iter_mut()
                .skip(k - 1)
                .take(m + 1)
                .for_each(|s| *s = None);
            let err = codec.decode(input.clone(), stripe.len()).unwrap_err();
            assert!(
                matches!(err, ErasureError::TooFewShards { have, need } if have == k - 1 && need == k),
                "{k}+{m}: {err}"
            );
            let before = input.clone();
            let err = codec.reconstruct_all(&mut input).unwrap_err();
            assert!(matches!(err, ErasureError::TooFewShards { .. }), "{err}");
            assert_eq!(input, before, "a failed repair leaves the shards alone");
        }
    }

    #[test]
    fn wrong_shard_lengths_are_refused() {
        let codec = Codec::new(4, 2).unwrap();
        let stripe = random_bytes(4000, 3);
        let shards = codec.encode(&stripe).unwrap();

        let mut short = present(&shards);
        short[5].as_mut().unwrap().pop();
        assert!(matches!(
            codec.decode(short.clone(), stripe.len()),
            Err(ErasureError::ShardSize(_))
        ));
        assert!(matches!(
            codec.reconstruct_all(&mut short),
            Err(ErasureError::ShardSize(_))
        ));

        // Equal lengths, but not what a 4000-byte stripe has.
        assert!(matches!(
            codec.decode(present(&shards), 5000),
            Err(ErasureError::ShardSize(_))
        ));

        let mut missing_slot = present(&shards);
        missing_slot.pop();
        assert!(matches!(
            codec.decode(missing_slot, stripe.len()),
            Err(ErasureError::ShardCount {
                have: 5,
                expected: 6
            })
        ));
    }

    #[test]
    fn decode_leaves_missing_parity_alone() {
        // All data present: decode must not need (nor compute) parity.
        let codec = Codec::new(4, 2).unwrap();
        let stripe = random_bytes(100_000, 5);
        let shards = codec.encode(&stripe).unwrap();
        let mut input = present(&shards);
        input[4] = None;
        input[5] = None;
        assert_eq!(codec.decode(input, stripe.len()).unwrap(), stripe);
    }

    #[test]
    fn reconstruct_all_of_empty_stripe() {
        let codec = Codec::new(4, 2).unwrap();
        let mut input: Vec<Option<Vec<u8>>> =
            codec.encode(&[]).unwrap().into_iter().map(Some).collect();
        input[0] = None;
        input[5] = None;
        codec.reconstruct_all(&mut input).unwrap();
        assert!(input.iter().all(|s| s.as_deref() == Some(&[][..])));
    }

    fn scheme_data_erasures() -> impl Strategy<Value = (usize, usize, Vec<u8>, Vec<usize>)> {
        (1usize..=MAX_DATA_SHARDS, 1usize..=MAX_PARITY_SHARDS).prop_flat_map(|(k, m)| {
            (
                Just(k),
                Just(m),
                proptest::collection::vec(any::<u8>(), 0..200_000),
                proptest::sample::subsequence((0..k + m).collect::<Vec<_>>(), 0..=m),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn prop_random_data_and_erasures((k, m, stripe, erased) in scheme_data_erasures()) {
            let codec = Codec::new(k, m).unwrap();
            let shards = codec.encode(&stripe).unwrap();
            let mut input = present(&shards);
            for &i in &erased {
                input[i] = None;
            }
            prop_assert_eq!(codec.decode(input.clone(), stripe.len()).unwrap(), stripe);
            codec.reconstruct_all(&mut input).unwrap();
            prop_assert_eq!(input, present(&shards));
        }
    }
}
