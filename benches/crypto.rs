//! Criterion benchmarks of the session-security core: handshake crypto per side and in full, and
//! seal + open of session frames. Run with `cargo bench --bench crypto`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kadmesh::crypto::{HandshakeConfig, Initiator, Responder};
use kadmesh::identity::Keypair;
use rand::SeedableRng;
use rand::rngs::StdRng;

const NOW: i64 = 1_700_000_000_000;

fn cfg() -> HandshakeConfig {
    HandshakeConfig {
        network_id: 1,
        client_version: "1.0.0".to_owned(),
        max_clock_skew: Duration::from_secs(30),
        listen_port: 4001,
    }
}

fn handshake(c: &mut Criterion) {
    let cfg = cfg();
    let mut rng = rand::rng();
    let a = Keypair::generate(&mut rng);
    let b = Keypair::generate(&mut rng);
    let b_id = b.node_id();
    let mut group = c.benchmark_group("handshake");

    // Initiator side: start + on_response (the responder's work is not timed).
    group.bench_function("initiator", |bench| {
        bench.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let (init, hello) = Initiator::start(&cfg, &a, &b_id, NOW, &mut rng).unwrap();
                timed += t.elapsed();
                let (resp, reply) = Responder::on_hello(&cfg, &b, &hello, NOW, &mut rng).unwrap();
                let t = Instant::now();
                let out = init.on_response(&reply, NOW).unwrap();
                timed += t.elapsed();
                black_box((resp, out));
            }
            timed
        })
    });

    // Responder side: on_hello + on_finish (the initiator's work is not timed).
    group.bench_function("responder", |bench| {
        bench.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let (init, hello) = Initiator::start(&cfg, &a, &b_id, NOW, &mut rng).unwrap();
                let t = Instant::now();
                let (resp, reply) = Responder::on_hello(&cfg, &b, &hello, NOW, &mut rng).unwrap();
                timed += t.elapsed();
                let (ea, fin) = init.on_response(&reply, NOW).unwrap();
                let t = Instant::now();
                let eb = resp.on_finish(&fin).unwrap();
                timed += t.elapsed();
                black_box((ea, eb));
            }
            timed
        })
    });

    // Both sides, all three messages.
    group.bench_function("full", |bench| {
        bench.iter(|| {
            let (init, hello) = Initiator::start(&cfg, &a, &b_id, NOW, &mut rng).unwrap();
            let (resp, reply) = Responder::on_hello(&cfg, &b, &hello, NOW, &mut rng).unwrap();
            let (ea, fin) = init.on_response(&reply, NOW).unwrap();
            let eb = resp.on_finish(&fin).unwrap();
            black_box((ea, eb))
        })
    });
    group.finish();
}

fn session(c: &mut Criterion) {
    let cfg = cfg();
    let mut rng = rand::rng();
    let a = Keypair::generate(&mut rng);
    let b = Keypair::generate(&mut rng);
    let (init, hello) = Initiator::start(&cfg, &a, &b.node_id(), NOW, &mut rng).unwrap();
    let (resp, reply) = Responder::on_hello(&cfg, &b, &hello, NOW, &mut rng).unwrap();
    let (ea, fin) = init.on_response(&reply, NOW).unwrap();
    let eb = resp.on_finish(&fin).unwrap();
    let (mut sealer, _) = ea.keys.split(StdRng::from_rng(&mut rng));
    let (_, mut opener) = eb.keys.split(StdRng::from_rng(&mut rng));

    let mut group = c.benchmark_group("session_seal_open");
    for len in [64usize, 1024, 64 * 1024] {
        let msg = vec![0x5Au8; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &msg, |bench, msg| {
            bench.iter(|| {
                let frame = sealer.seal(black_box(msg)).unwrap();
                opener.open(black_box(&frame)).unwrap()
            })
        });
    }
    group.finish();
}

/// The curve operations a handshake side performs, for reading the handshake numbers.
fn primitives(c: &mut Criterion) {
    use k256::ecdh::EphemeralSecret;
    use k256::elliptic_curve::Generate;
    use sha2::{Digest, Sha256};

    let mut rng = rand::rng();
    let kp = Keypair::generate(&mut rng);
    let digest: [u8; 32] = Sha256::digest(b"transcript").into();
    let sig = kp.sign_digest(&digest);
    let compressed = kp.public().to_compressed();
    let peer = k256::PublicKey::from_sec1_bytes(&compressed).unwrap();
    let eph = EphemeralSecret::generate_from_rng(&mut rng);

    let mut group = c.benchmark_group("primitives");
    group.bench_function("ephemeral_keygen", |b| {
        b.iter(|| EphemeralSecret::generate_from_rng(&mut rng).public_key())
    });
    group.bench_function("ecdsa_sign", |b| {
        b.iter(|| kp.sign_digest(black_box(&digest)))
    });
    group.bench_function("ecdsa_verify", |b| {
        b.iter(|| kp.public().verify_digest(black_box(&digest), &sig))
    });
    group.bench_function("ecdh", |b| b.iter(|| eph.diffie_hellman(black_box(&peer))));
    group.bench_function("decompress_point", |b| {
        b.iter(|| k256::PublicKey::from_sec1_bytes(black_box(&compressed)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, handshake, session, primitives);
criterion_main!(benches);
