//! Runs one side of the handshake (`accept_on` or `connect_on`) against a
//! scripted peer over an in-memory duplex: raw bytes, well-formed handshake
//! messages with arbitrary fields, and proofs the peer computes correctly from
//! what the side under test sent (so the fuzzer reaches every step, not just
//! the first refusal).
//!
//! The side under test must never panic, must finish (success or error) within
//! its timeout (tokio's clock is paused, so the timeout costs no real time),
//! must never allocate much (libFuzzer's malloc limit), and must succeed only
//! if the peer proved the secret it required:
//!
//! - an acceptor requiring a secret admits only a connector that sent the
//!   right proof; one refusing by policy admits nobody;
//! - a connector holding a secret succeeds only after the acceptor sent the
//!   right proof, followed by `Welcome`.
//!
//! Input layout: byte 0 picks the side under test and its secret; the rest is
//! the peer's script, an opcode byte and its operands each.
#![no_main]

use std::time::Duration;

use actor_transport::codec::encode_frame;
use actor_transport::{
    Auth, Channel, FrameCodec, HandshakeConfig, HandshakeError, Msg, Nonce, Secret, Uid, accept_on,
    connect_on,
};
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::codec::Decoder;

const SECRET: [u8; 16] = [0x11; 16];
const TIMEOUT: Duration = Duration::from_secs(5);

/// The proof of `label` for a transcript, computed from PROTOCOL.md (not the
/// crate's code): HMAC-SHA256 over length-prefixed parts.
fn proof(label: &[u8], nonce_a: &[u8], nonce_c: &[u8], conn: &Uid, acc: &Uid) -> Bytes {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&SECRET).expect("any key length");
    for part in [
        label,
        nonce_a,
        nonce_c,
        conn.name.as_bytes(),
        conn.id.as_bytes(),
        acc.name.as_bytes(),
        acc.id.as_bytes(),
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    Bytes::from(mac.finalize().into_bytes().to_vec())
}

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes(&mut self) -> Vec<u8> {
        let n = usize::from(self.byte()).min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken.to_vec()
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// What the peer learnt from the side under test: its uid and nonce.
type Heard = Option<(Uid, Bytes)>;

#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// The side under test accepts; the peer connects.
    Acceptor,
    /// The side under test connects; the peer accepts.
    Connector,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };
    let config = input.byte();
    let role = if config & 1 == 0 { Role::Acceptor } else { Role::Connector };
    // Acceptor: 0 open, 1 requires the secret, 2 refuses by policy, 3
    // requires the secret with a nonce arranged in advance (a spawned
    // child's parent).
    // Connector: 0 holds no secret, else holds it.
    let mode = (config >> 1) % 4;
    let script = input.data.to_vec();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (r, w) = tokio::io::split(ours);
        let hs = HandshakeConfig {
            uid: Uid { name: "tested".into(), id: "00000000000000aa".into() },
            timeout: TIMEOUT,
            channel: Default::default(),
        };
        let secret = Secret::new(SECRET.to_vec());
        let (peer_r, mut peer_w) = tokio::io::split(theirs);

        // The peer's reader: decodes what the side under test sends and
        // publishes its Hello, so the script can compute valid proofs.
        let (heard_tx, heard_rx) = watch::channel::<Heard>(None);
        let reader = tokio::spawn(async move {
            let mut peer_r = peer_r;
            let mut codec = FrameCodec::<Msg>::new(1 << 20);
            let mut buf = BytesMut::new();
            let mut welcomed = false;
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(Msg::Hello { uid, nonce, .. })) => {
                        heard_tx.send_replace(Some((uid, nonce)));
                    }
                    Ok(Some(Msg::Welcome)) => welcomed = true,
                    Ok(Some(_)) => {}
                    Ok(None) => match peer_r.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return welcomed,
                        Ok(_) => {}
                    },
                    Err(e) => panic!("the side under test sent a bad frame: {e}"),
                }
            }
        });

        // The peer's script. Returns whether it sent a valid proof (and, as an
        // acceptor, a Welcome after it).
        let script = async move {
            let mut input = Input { data: &script };
            let mut heard_rx = heard_rx;
            let me = Uid { name: "peer".into(), id: "00000000000000bb".into() };
            let my_nonce = Bytes::from_static(&[0xcc; 32]);
            // Whether the first `Auth` sent was a valid proof: the side under
            // test reads only the first.
            let mut proved = false;
            let mut auths = 0;
            let mut welcomed_after_proof = false;
            let mut steps = 0;
            while !input.data.is_empty() && steps < 64 {
                steps += 1;
                let mut frame = BytesMut::new();
                let msg = match input.byte() % 10 {
                    0 => {
                        let raw = input.bytes();
                        if peer_w.write_all(&raw).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    1 => Msg::Hello { version: 2, uid: me.clone(), nonce: my_nonce.clone() },
                    2 => {
                        let version = u32::from(input.byte());
                        let uid = Uid { name: input.text(), id: input.text() };
                        Msg::Hello { version, uid, nonce: Bytes::from(input.bytes()) }
                    }
                    3 | 4 => {
                        // A valid proof once the other side's Hello is known.
                        let Ok(heard) = heard_rx.wait_for(Option::is_some).await else { break };
                        let Some((them, their_nonce)) = heard.clone() else { break };
                        let p = match role {
                            Role::Acceptor => proof(
                                b"actor-transport handshake v2 connector",
                                &their_nonce,
                                &my_nonce,
                                &me,
                                &them,
                            ),
                            Role::Connector => proof(
                                b"actor-transport handshake v2 acceptor",
                                &my_nonce,
                                &their_nonce,
                                &them,
                                &me,
                            ),
                        };
                        auths += 1;
                        proved |= auths == 1;
                        Msg::Auth { proof: Some(p) }
                    }
                    5 => {
                        auths += 1;
                        Msg::Auth { proof: Some(Bytes::from(input.bytes())) }
                    }
                    6 => {
                        auths += 1;
                        Msg::Auth { proof: None }
                    }
                    7 => {
                        welcomed_after_proof = proved;
                        Msg::Welcome
                    }
                    8 => Msg::Refused { reason: input.text() },
                    _ => Msg::Ping { nonce: 1 },
                };
                encode_frame(&msg, usize::MAX, &mut frame).expect("encode");
                if peer_w.write_all(&frame).await.is_err() {
                    break;
                }
            }
            // The peer hangs up at the end of its script, so a handshake
            // waiting for more ends now (its timeout covers a peer that
            // never does).
            let _ = peer_w.shutdown().await;
            (proved, welcomed_after_proof, peer_w)
        };

        let channel = Channel::new(r, w, &hs.channel);
        let tested = async {
            match role {
                Role::Acceptor => {
                    let secret = secret.clone();
                    accept_on(channel, &hs, move |_| match mode {
                        0 => Auth::Open,
                        1 => Auth::Require(secret),
                        3 => Auth::Arranged { secret, nonce: Nonce::random() },
                        _ => Auth::Refuse("policy".into()),
                    })
                    .await
                }
                Role::Connector => connect_on(channel, &hs, (mode != 0).then_some(&secret)).await,
            }
        };
        // The handshake's own timeout bounds it; the outer one only catches a
        // handshake that outlives it.
        let bounded = tokio::time::timeout(TIMEOUT * 2, tested);
        let (outcome, (proved, welcomed, peer_w)) = tokio::join!(bounded, script);
        let outcome: Result<_, HandshakeError> = outcome.expect("the handshake outlived its timeout");
        match (&outcome, role, mode) {
            (Ok(_), Role::Acceptor, 1 | 3) => {
                assert!(proved, "admitted a connector that sent no valid proof")
            }
            (Ok(_), Role::Acceptor, 2) => panic!("admitted a connector the policy refused"),
            (Ok(_), Role::Connector, 1..) => {
                assert!(welcomed, "trusted an acceptor that sent no valid proof")
            }
            _ => {}
        }
        drop(outcome);
        drop(peer_w);
        let _ = reader.await;
    });
});
