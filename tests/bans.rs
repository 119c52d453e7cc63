//! Bans on real TCP (127.0.0.1, port 0): a peer that exceeds its rate is disconnected, banned, and cannot
//! reconnect until the ban ends while a well-behaved peer is never affected; a MAC failure after the
//! handshake bans the id (the same key is refused after its next handshake); enough banned ids ban the
//! IP, which is then refused at accept; banning a connected peer disconnects it and dialling it fails;
//! bans survive a daemon restart.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{RawPeer, WAIT, echo_node, local_config, node, now_ms, wait_event};
use futures::{SinkExt, StreamExt};
use kadmesh::ban::{Ban, BanError, BanReason, BanTarget, Offence};
use kadmesh::daemon::{Daemon, NodeSettings};
use kadmesh::transport::{CloseReason, TransportError};
use kadmesh::{Error, Keypair, NodeId, Swarm, SwarmEvent};
use rand::Rng;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

/// Waits for the node to ban `target`.
async fn banned(events: &mut broadcast::Receiver<SwarmEvent>, target: BanTarget) -> Ban {
    wait_event(events, |ev| match ev {
        SwarmEvent::Banned(ban) if ban.target == target => Some(ban.clone()),
        _ => None,
    })
    .await
}

/// Waits for the node to close the connection of `peer`.
async fn disconnected(events: &mut broadcast::Receiver<SwarmEvent>, peer: NodeId) -> CloseReason {
    wait_event(events, |ev| match ev {
        SwarmEvent::PeerDisconnected { peer: p, reason } if *p == peer => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// Waits for the node to report an authenticated connection from `peer`.
async fn connected(events: &mut broadcast::Receiver<SwarmEvent>, peer: NodeId) {
    wait_event(events, |ev| match ev {
        SwarmEvent::PeerConnected(p) if p.id == peer => Some(()),
        _ => None,
    })
    .await
}

/// Waits for the node to report why it refused the connection from `addr`.
async fn refused(
    events: &mut broadcast::Receiver<SwarmEvent>,
    addr: std::net::SocketAddr,
) -> CloseReason {
    wait_event(events, |ev| match ev {
        SwarmEvent::HandshakeFailed { addr: a, reason } if *a == addr => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// Connects as `key`, waits until the node has the connection, and sends a frame that fails the MAC.
async fn fail_the_mac(
    node: &Swarm,
    events: &mut broadcast::Receiver<SwarmEvent>,
    key: &Keypair,
) -> RawPeer {
    let mut raw = RawPeer::connect_as(node, key.clone()).await;
    connected(events, key.node_id()).await;
    let mut junk = vec![0u8; 16 + 32 + 32];
    rand::rng().fill_bytes(&mut junk);
    raw.framed.send(Bytes::from(junk)).await.unwrap();
    raw
}

/// Reads until the node closes the stream; fails if a frame arrives.
async fn closed_by_node(raw: &mut RawPeer) {
    let end = tokio::time::timeout(WAIT, raw.framed.next()).await.unwrap();
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_abuser_is_banned_and_cannot_reconnect_until_the_ban_ends() {
    let mut config = local_config();
    config.net.rate_limit_per_sec = 50;
    config.net.rate_limit_burst = 20;
    config.bans.ban_duration = Duration::from_secs(2);
    let victim = echo_node(config).await;
    let _chat = victim.register_protocol("chat").unwrap();
    let target = victim.local_node();
    let mut events = victim.events();

    // A well-behaved third peer: ten requests a second, well under the limit, for the whole test.
    let friend = Swarm::start(local_config()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let round_trips = Arc::new(AtomicU64::new(0));
    let talker = {
        let (friend, stop, n) = (friend.clone(), stop.clone(), round_trips.clone());
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(100));
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                let reply = friend
                    .request_to(&target, "echo", &b"friendly"[..], WAIT)
                    .await
                    .expect("the well-behaved peer was disturbed");
                assert_eq!(reply.data(), b"friendly");
                n.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The abuser floods: the victim closes it for the rate limit and bans its id.
    let abuser = Swarm::start(local_config()).await.unwrap();
    let abuser_id = abuser.local_node().id;
    for _ in 0..500 {
        // Sends fail once the victim has closed the connection; that is the point.
        if abuser
            .send_message_to(&target, "chat", &b"flood"[..])
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(
        disconnected(&mut events, abuser_id).await,
        CloseReason::RateLimited
    );
    let ban = banned(&mut events, BanTarget::Id(abuser_id)).await;
    assert_eq!(ban.reason, BanReason::Offence(Offence::RateLimit));
    assert_eq!(ban.until_ms - ban.since_ms, 2_000);
    assert_eq!(victim.ban_of(&BanTarget::Id(abuser_id)), Some(ban.clone()));

    // The victim does not dial a banned node either.
    let dial = victim.connect_node(&abuser.local_node()).await;
    assert!(
        matches!(&dial, Err(Error::Transport(TransportError::Banned(BanTarget::Id(id)))) if *id == abuser_id),
        "{dial:?}"
    );

    // The abuser retries; every attempt during the ban is refused after its handshake, and the first
    // that succeeds comes no earlier than the ban's end.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut attempts = 0;
    let reconnected_at = loop {
        assert!(tokio::time::Instant::now() < deadline, "never reconnected");
        attempts += 1;
        let reply = abuser
            .request_to(&target, "echo", &b"back?"[..], Duration::from_millis(500))
            .await;
        if let Ok(reply) = reply {
            assert_eq!(reply.data(), b"back?");
            break now_ms();
        }
    };
    assert!(
        reconnected_at >= ban.until_ms,
        "reconnected {} ms before the ban ended",
        ban.until_ms - reconnected_at
    );
    let mut refusals = 0;
    loop {
        match events.try_recv() {
            Ok(SwarmEvent::HandshakeFailed {
                reason: CloseReason::Banned(BanTarget::Id(id)),
                ..
            }) => {
                assert_eq!(id, abuser_id);
                refusals += 1;
            }
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    assert!(
        refusals >= 1 && attempts >= 2,
        "{refusals} refusals in {attempts} attempts"
    );
    let stats = victim.ban_stats();
    assert!(stats.refused_by_id >= refusals, "{stats:?}");
    assert_eq!(
        (stats.active_ids, stats.active_ips),
        (0, 0),
        "the ban ended"
    );

    // The friend was never affected.
    let before = round_trips.load(Ordering::Relaxed);
    let progressed = async {
        while round_trips.load(Ordering::Relaxed) < before + 3 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, progressed).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    talker.await.unwrap();
    assert!(
        victim
            .ban_of(&BanTarget::Id(friend.local_node().id))
            .is_none()
    );
    assert_eq!(victim.ban_stats().bans.iter().sum::<u64>(), 1);
    for n in [friend, abuser, victim] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mac_failure_bans_the_id_and_the_same_key_is_refused_after_its_handshake() {
    let victim = node().await;
    let mut events = victim.events();
    let key = Keypair::random();
    let mut raw = fail_the_mac(&victim, &mut events, &key).await;
    let ban = banned(&mut events, BanTarget::Id(key.node_id())).await;
    assert_eq!(ban.reason, BanReason::Offence(Offence::MacFailure));
    closed_by_node(&mut raw).await;

    // The same key completes a handshake (our side), then the node closes it: Banned.
    let mut again = RawPeer::connect_as(&victim, key.clone()).await;
    let addr = again.framed.get_ref().local_addr().unwrap();
    let reason = refused(&mut events, addr).await;
    assert_eq!(reason, CloseReason::Banned(BanTarget::Id(key.node_id())));
    closed_by_node(&mut again).await;

    // 127.0.0.1 is exempt under `net.exempt_local`: another key from it is welcome.
    let other = RawPeer::connect(&victim).await;
    connected(&mut events, other.keypair.node_id()).await;
    assert_eq!(victim.bans().len(), 1);
    victim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enough_banned_ids_ban_the_ip_which_is_then_refused_at_accept() {
    let mut config = local_config();
    // Without the local exemption, 127.0.0.1 is an address like any other.
    config.net.exempt_local = false;
    let threshold = config.bans.ip_threshold;
    let victim = Swarm::start(config).await.unwrap();
    let mut events = victim.events();
    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    for _ in 0..threshold {
        let key = Keypair::random();
        let mut raw = fail_the_mac(&victim, &mut events, &key).await;
        banned(&mut events, BanTarget::Id(key.node_id())).await;
        closed_by_node(&mut raw).await;
    }
    let ip_ban = victim
        .ban_of(&BanTarget::Ip(localhost))
        .expect("the IP is banned");
    assert_eq!(ip_ban.reason, BanReason::IpThreshold);
    assert_eq!(victim.bans().len(), threshold + 1);

    // A new connection from the IP is closed before any handshake: the client reads the end at once.
    let mut client = tokio::net::TcpStream::connect(victim.local_node().addr)
        .await
        .unwrap();
    let addr = client.local_addr().unwrap();
    let reason = refused(&mut events, addr).await;
    assert_eq!(reason, CloseReason::Banned(BanTarget::Ip(localhost)));
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, client.read(&mut buf))
        .await
        .unwrap();
    assert!(!matches!(read, Ok(n) if n > 0), "{read:?}");
    assert!(victim.ban_stats().refused_by_ip >= 1);

    // Lifting the IP ban lets new ids in again.
    assert_eq!(victim.unban(&BanTarget::Ip(localhost)), Some(ip_ban));
    let fresh = RawPeer::connect(&victim).await;
    connected(&mut events, fresh.keypair.node_id()).await;
    victim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banning_a_connected_peer_disconnects_it_and_dials_fail_until_unbanned() {
    let (a, b) = (node().await, node().await);
    let b_info = b.local_node();
    a.connect_node(&b_info).await.unwrap();
    let mut events = a.events();
    let target = BanTarget::Id(b_info.id);
    let ban = a
        .ban(target, Some(Duration::from_secs(60)), "testing\nbans")
        .unwrap();
    assert_eq!(
        (ban.reason, ban.note.as_str()),
        (BanReason::Manual, "testing bans")
    );
    assert_eq!(ban.until_ms - ban.since_ms, 60_000);
    assert_eq!(
        disconnected(&mut events, b_info.id).await,
        CloseReason::Banned(target)
    );
    let dial = a.connect_node(&b_info).await;
    assert!(
        matches!(&dial, Err(Error::Transport(TransportError::Banned(t))) if *t == target),
        "{dial:?}"
    );
    assert!(
        a.send_message_to(&b_info, "chat", &b"hi"[..])
            .await
            .is_err()
    );
    // Bad bans are typed errors.
    let own = a.ban(BanTarget::Id(a.local_node().id), None, "");
    assert!(matches!(own, Err(Error::Ban(BanError::OwnId))), "{own:?}");
    let local = a.ban(BanTarget::Ip("127.0.0.1".parse().unwrap()), None, "");
    assert!(
        matches!(local, Err(Error::Ban(BanError::ExemptIp(_)))),
        "{local:?}"
    );
    let zero = a.ban(target, Some(Duration::ZERO), "");
    assert!(
        matches!(zero, Err(Error::Ban(BanError::BadDuration))),
        "{zero:?}"
    );

    assert_eq!(a.unban(&target), Some(ban));
    assert_eq!(a.unban(&target), None);
    a.connect_node(&b_info).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_survive_a_daemon_restart() {
    common::init_tracing();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "bans-restart-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(kadmesh::persist::BANS_FILE);
    let now = now_ms();
    let kept_ip: IpAddr = "203.0.113.9".parse().unwrap();
    std::fs::write(
        &file,
        format!(
            "# written by hand\n\
             {kept_ip} {} manual {now} kept across restarts\n\
             203.0.113.10 {} manual 0 long expired\n\
             this line is not a ban\n",
            now + 3_600_000,
            now - 1
        ),
    )
    .unwrap();
    let settings = NodeSettings {
        data_dir: dir.clone(),
        ..NodeSettings::default()
    };
    let config = local_config();

    let first = Daemon::start(settings.clone(), config.clone())
        .await
        .unwrap();
    let loaded = first.persisted_bans();
    assert_eq!((loaded.bans.len(), loaded.expired), (1, 1));
    assert_eq!(loaded.problems.len(), 1);
    assert!(loaded.problems[0].starts_with("line 4: "), "{loaded:?}");
    let kept = first
        .swarm()
        .ban_of(&BanTarget::Ip(kept_ip))
        .expect("loaded");
    assert_eq!(kept.note, "kept across restarts");
    let banned_id = Keypair::random().node_id();
    let added = first
        .swarm()
        .ban(
            BanTarget::Id(banned_id),
            Some(Duration::from_secs(3600)),
            "persist me",
        )
        .unwrap();
    // The change is written shortly after (debounced), without waiting for shutdown.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&file)
        .unwrap_or_default()
        .contains(&banned_id.to_string())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bans file not rewritten"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.shutdown().await;

    let second = Daemon::start(settings, config).await.unwrap();
    assert_eq!(second.persisted_bans().problems, Vec::<String>::new());
    assert_eq!(second.persisted_bans().expired, 0);
    assert_eq!(second.swarm().bans(), vec![kept, added]);
    second.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
