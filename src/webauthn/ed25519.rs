//! Whether 32 bytes are an Ed25519 public key that a signature can be checked against,
//! decided as ring decodes one (its `x25519_ge_frombytes_vartime`, the ref10 decoder):
//! the top bit is x's sign and is masked off y, y is *not* required to be below p (unlike
//! RFC 8032 §5.1.3: y = p decodes as y = 0), and the point exists when x² = (y² − 1) /
//! (d·y² + 1) has a root. On top of ring, a point of small order (1, 2, 4 or 8) is
//! refused: it is nobody's public key (every key made from a secret is in the group of
//! prime order), and signatures under it need no secret at all (with the identity as the
//! key, R = [S]B verifies for every message).
//!
//! Arithmetic modulo p = 2^255 − 19 on four 64-bit limbs, least significant first, every
//! value kept fully reduced. It is not constant-time and need not be: a public key is
//! public data, and nothing here touches a secret.

/// An element of GF(p), `< p`, little-endian limbs.
type Fe = [u64; 4];

const P: Fe = [
    0xffff_ffff_ffff_ffed,
    0xffff_ffff_ffff_ffff,
    0xffff_ffff_ffff_ffff,
    0x7fff_ffff_ffff_ffff,
];
const ZERO: Fe = [0; 4];
const ONE: Fe = [1, 0, 0, 0];
/// (p − 1) / 2 = 2^254 − 10, the exponent of Euler's criterion.
const HALF_P_MINUS_1: Fe = [
    0xffff_ffff_ffff_fff6,
    0xffff_ffff_ffff_ffff,
    0xffff_ffff_ffff_ffff,
    0x3fff_ffff_ffff_ffff,
];
/// The curve's d = −121665/121666 (RFC 8032 §5.1); a test checks 121666·d ≡ −121665.
const D: Fe = [
    0x75eb_4dca_1359_78a3,
    0x0070_0a4d_4141_d8ab,
    0x8cc7_4079_7779_e898,
    0x5203_6cee_2b6f_fe73,
];
/// The y of the two points of order 8 with positive y below p/2; the other two have
/// p − this. A test derives all eight torsion points from curve25519-dalek's.
const Y_ORDER_8: Fe = [
    0x4fd8_4d3d_706a_17c7,
    0x0f67_100d_760b_3cba,
    0xc6cc_392c_fa53_202a,
    0x7a03_ac92_77fd_c74e,
];

/// What 32 bytes are as an Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// No point of edwards25519 has this y: ring refuses the key at every signature.
    NotAPoint,
    /// A point of order 1, 2, 4 or 8.
    SmallOrder,
    /// A point of larger order: a key a signature can be checked against.
    Point,
}

/// Decodes `key` as ring does, and says whether it is of small order.
pub fn decode(key: &[u8; 32]) -> Decoded {
    let y = from_bytes(key);
    let yy = mul(&y, &y);
    let u = sub(&yy, &ONE);
    let v = add(&mul(&D, &yy), &ONE);
    // v is never zero (−1/d is not a square), so u/v has a root exactly when u·v does.
    let euler = pow(&mul(&u, &v), &HALF_P_MINUS_1);
    if euler != ZERO && euler != ONE {
        return Decoded::NotAPoint;
    }
    // The eight torsion points: (0, 1) of order 1, (0, −1) of order 2, (±√−1, 0) of
    // order 4, and four of order 8 on two y. x's sign does not change the order.
    let small = [
        ZERO,
        ONE,
        sub(&ZERO, &ONE),
        Y_ORDER_8,
        sub(&ZERO, &Y_ORDER_8),
    ];
    if small.contains(&y) {
        Decoded::SmallOrder
    } else {
        Decoded::Point
    }
}

/// y from its encoding: the sign bit masked, then reduced (y ≥ p is taken, as ring does).
fn from_bytes(bytes: &[u8; 32]) -> Fe {
    let mut y = ZERO;
    for (limb, chunk) in y.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(le);
    }
    y[3] &= 0x7fff_ffff_ffff_ffff;
    reduced(y)
}

/// `a ≥ b` as 256-bit numbers.
fn at_least(a: &Fe, b: &Fe) -> bool {
    for i in (0..4).rev() {
        if a[i] != b[i] {
            return a[i] > b[i];
        }
    }
    true
}

/// `a − b` as 256-bit numbers, for `a ≥ b`.
fn minus(a: &Fe, b: &Fe) -> Fe {
    let mut out = ZERO;
    let mut borrow = false;
    for i in 0..4 {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        out[i] = d;
        borrow = b1 || b2;
    }
    out
}

/// A number below 2^256 brought below p (2^256 = 2p + 38: two subtractions at most).
fn reduced(mut a: Fe) -> Fe {
    while at_least(&a, &P) {
        a = minus(&a, &P);
    }
    a
}

fn add(a: &Fe, b: &Fe) -> Fe {
    // Both below p, so the sum is below 2p < 2^256: no carry out of the top limb.
    let mut out = ZERO;
    let mut carry = 0u128;
    for i in 0..4 {
        let s = u128::from(a[i]) + u128::from(b[i]) + carry;
        out[i] = s as u64;
        carry = s >> 64;
    }
    reduced(out)
}

fn sub(a: &Fe, b: &Fe) -> Fe {
    add(a, &minus(&P, b))
}

fn mul(a: &Fe, b: &Fe) -> Fe {
    let mut t = [0u64; 8];
    for i in 0..4 {
        let mut carry = 0u128;
        for j in 0..4 {
            // At most (2^64 − 1)² + 2·(2^64 − 1) = 2^128 − 1: no overflow.
            let v = u128::from(a[i]) * u128::from(b[j]) + u128::from(t[i + j]) + carry;
            t[i + j] = v as u64;
            carry = v >> 64;
        }
        t[i + 4] = carry as u64;
    }
    // t = low + 2^256·high, and 2^256 ≡ 38 (mod p).
    let mut out = ZERO;
    let mut carry = 0u128;
    for i in 0..4 {
        let v = u128::from(t[i]) + 38 * u128::from(t[i + 4]) + carry;
        out[i] = v as u64;
        carry = v >> 64;
    }
    // What is left above 2^256 (below 39) folds in once more; should that carry out
    // again, the low part is below 38·39 and takes the last 38 without carrying.
    let mut carry = carry * 38;
    for limb in out.iter_mut() {
        let v = u128::from(*limb) + carry;
        *limb = v as u64;
        carry = v >> 64;
    }
    if carry != 0 {
        out[0] += 38;
    }
    reduced(out)
}

fn pow(base: &Fe, exponent: &Fe) -> Fe {
    let mut out = ONE;
    for bit in (0..256).rev() {
        out = mul(&out, &out);
        if (exponent[bit / 64] >> (bit % 64)) & 1 == 1 {
            out = mul(&out, base);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use ring::rand::{SecureRandom, SystemRandom};
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn bytes(hex: &str) -> [u8; 32] {
        data_encoding::HEXLOWER
            .decode(hex.as_bytes())
            .unwrap()
            .try_into()
            .unwrap()
    }

    fn to_bytes(a: &Fe) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(a) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    /// The independent answer: curve25519-dalek's decoder and its order check.
    fn dalek(key: &[u8; 32]) -> Decoded {
        match CompressedEdwardsY(*key).decompress() {
            None => Decoded::NotAPoint,
            Some(p) if p.is_small_order() => Decoded::SmallOrder,
            Some(_) => Decoded::Point,
        }
    }

    #[test]
    fn the_constants_are_what_they_say() {
        let small = |n: u64| [n, 0, 0, 0];
        // 121666·d + 121665 ≡ 0.
        assert_eq!(add(&mul(&small(121_666), &D), &small(121_665)), ZERO, "d");
        assert_eq!(add(&HALF_P_MINUS_1, &HALF_P_MINUS_1), sub(&ZERO, &ONE));
        // −1 is a square (p ≡ 1 mod 4) and d is not: v = d·y² + 1 is never zero.
        assert_eq!(pow(&sub(&ZERO, &ONE), &HALF_P_MINUS_1), ONE);
        assert_eq!(pow(&D, &HALF_P_MINUS_1), sub(&ZERO, &ONE));
        // The torsion points' y, from dalek's eight, sign bit masked.
        let mut ys: Vec<Fe> = EIGHT_TORSION
            .iter()
            .map(|p| from_bytes(&p.compress().to_bytes()))
            .collect();
        ys.sort();
        ys.dedup();
        let mut ours = vec![
            ZERO,
            ONE,
            sub(&ZERO, &ONE),
            Y_ORDER_8,
            sub(&ZERO, &Y_ORDER_8),
        ];
        ours.sort();
        assert_eq!(ys, ours);
    }

    #[test]
    fn field_arithmetic_agrees_with_itself_at_the_edges() {
        let p_minus_1 = sub(&ZERO, &ONE);
        assert_eq!(mul(&p_minus_1, &p_minus_1), ONE);
        assert_eq!(add(&p_minus_1, &ONE), ZERO);
        assert_eq!(sub(&ONE, &ONE), ZERO);
        // Fermat: a^(p−1) = 1, so a^((p−1)/2) is ±1, for random a.
        let rng = SystemRandom::new();
        for _ in 0..50 {
            let mut b = [0u8; 32];
            rng.fill(&mut b).unwrap();
            let a = from_bytes(&b);
            let e = pow(&a, &HALF_P_MINUS_1);
            assert!(e == ONE || e == p_minus_1, "{b:?}");
            let square = mul(&a, &a);
            assert_eq!(pow(&square, &HALF_P_MINUS_1), ONE, "a square: {b:?}");
            // (a + 1)² = a² + 2a + 1.
            let a1 = add(&a, &ONE);
            assert_eq!(
                mul(&a1, &a1),
                add(&add(&square, &add(&a, &a)), &ONE),
                "{b:?}"
            );
        }
    }

    /// RFC 8032 §7.1: the public keys of TEST 1, 2, 3, 1024 and SHA(abc), each also
    /// derived by ring from its secret.
    #[test]
    fn the_rfc_8032_keys_are_points() {
        for (secret, public) in [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            ),
            (
                "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
                "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
            ),
            (
                "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
                "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
            ),
        ] {
            let pair = Ed25519KeyPair::from_seed_unchecked(&bytes(secret)).unwrap();
            assert_eq!(pair.public_key().as_ref(), bytes(public), "{secret}");
            assert_eq!(decode(&bytes(public)), Decoded::Point, "{public}");
        }
        let rng = SystemRandom::new();
        for _ in 0..20 {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            let key: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
            assert_eq!(decode(&key), Decoded::Point);
        }
    }

    #[test]
    fn the_eight_torsion_points_are_refused_in_every_encoding() {
        let mut encodings = Vec::new();
        for point in EIGHT_TORSION {
            let canonical = point.compress().to_bytes();
            encodings.push(canonical);
            // The other sign of x (for x = 0 too: ring and dalek both take it).
            let mut flipped = canonical;
            flipped[31] ^= 0x80;
            encodings.push(flipped);
        }
        // y = p (read as 0) and y = p + 1 (as 1), with and without the sign bit.
        for y in [P, [P[0] + 1, P[1], P[2], P[3]]] {
            let mut b = to_bytes(&y);
            encodings.push(b);
            b[31] |= 0x80;
            encodings.push(b);
        }
        for key in encodings {
            assert_eq!(decode(&key), Decoded::SmallOrder, "{key:02x?}");
            assert_eq!(dalek(&key), Decoded::SmallOrder, "{key:02x?}");
        }
    }

    #[test]
    fn random_strings_are_judged_as_curve25519_dalek_judges_them() {
        let rng = SystemRandom::new();
        let mut seen = [0usize; 3];
        for _ in 0..3000 {
            let mut key = [0u8; 32];
            rng.fill(&mut key).unwrap();
            let ours = decode(&key);
            assert_eq!(ours, dalek(&key), "{key:02x?}");
            seen[ours as usize] += 1;
        }
        // About half of all y are on the curve.
        assert!(seen[0] > 1000 && seen[2] > 1000, "{seen:?}");
        // And near p, where the reduction matters: y = p − 20 … p + 18, both signs.
        for k in 0u64..39 {
            let y = [P[0] - 20 + k, P[1], P[2], P[3]];
            for sign in [0, 0x80] {
                let mut key = to_bytes(&y);
                key[31] |= sign;
                assert_eq!(decode(&key), dalek(&key), "p − 20 + {k}, sign {sign:x}");
            }
        }
    }
}
