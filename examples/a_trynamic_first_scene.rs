//! Two actors find each other by name and greet each other.
//!
//! The director (root) starts `donny` and `gretchen`, then asks each to say
//! hello to the other. Each actor looks its partner up through the arbiter
//! (hosted by the root, no setup needed), calls its `hi` through a portal, and
//! relays the answer back to the director.
//!
//! Run: `cargo run --example a_trynamic_first_scene`

use std::time::Duration;

#[actor::remote]
async fn hi() -> actor::Result<String> {
    Ok(format!("hi, this is {}", actor::uid()?.name))
}

#[actor::remote]
async fn say_hello(other: String) -> actor::Result<String> {
    let partner = actor::wait_for_actor_within(&other, Duration::from_secs(10)).await?;
    let answer = partner.run(hi, ()).await?;
    Ok(format!("{} asked {other} and heard: {answer}", actor::uid()?.name))
}

fn main() -> actor::Result<()> {
    actor::run(async {
        actor::open_nursery(|n| async move {
            let donny = n.start_actor("donny").await?;
            let gretchen = n.start_actor("gretchen").await?;
            let (a, b) = tokio::join!(
                donny.run(say_hello, ("gretchen".into(),)),
                gretchen.run(say_hello, ("donny".into(),))
            );
            println!("{}", a?);
            println!("{}", b?);
            Ok(())
        })
        .await
    })
}
