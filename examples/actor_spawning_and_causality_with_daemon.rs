//! A daemon actor: started with `start_actor`, it serves calls until cancelled.
//!
//! The root calls it several times through its portal (each call is a typed
//! remote call: the compiler checks argument and result types), then cancels
//! it explicitly. Its actor-local state counts the calls it served.
//!
//! Run: `cargo run --example actor_spawning_and_causality_with_daemon`

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default)]
struct Counter {
    calls: u64,
}

#[actor::remote]
async fn movie_theatre_question() -> actor::Result<String> {
    let state = actor::state::<Counter>()?;
    state.lock().await.calls += 1;
    Ok("in your mind's eye, what is the name of the greatest film of all time?".into())
}

#[actor::remote]
async fn cellar_door(name: String) -> actor::Result<String> {
    let state = actor::state::<Counter>()?;
    let mut counter = state.lock().await;
    counter.calls += 1;
    Ok(format!("{name} says cellar door (call #{} in this actor)", counter.calls))
}

/// A plain function runs on the actor's blocking pool, so it cannot stall the
/// actor's other calls.
#[actor::remote]
fn fib(n: u32) -> actor::Result<u64> {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    Ok(a)
}

fn main() -> actor::Result<()> {
    actor::run(async {
        actor::open_nursery(|n| async move {
            let portal = n.actor("frank").state(&Counter::default()).start().await?;
            println!("started daemon `{}`", portal.uid());
            println!("{}", portal.run(movie_theatre_question, ()).await?);
            println!("{}", portal.run(cellar_door, ("frank".into(),)).await?);
            println!("{}", portal.run(cellar_door, ("frank".into(),)).await?);
            println!("fib(90) computed remotely: {}", portal.run(fib, (90,)).await?);
            portal.cancel_actor().await?;
            println!("daemon `{}` cancelled and reaped", portal.uid());
            Ok(())
        })
        .await
    })
}
