//! Finding actors by name: `find_actor`, `wait_for_actor`, and the listing.
//!
//! Run: `cargo run --example service_discovery`

use std::time::Duration;

#[actor::remote]
async fn whoami() -> actor::Result<String> {
    Ok(actor::uid()?.to_string())
}

fn main() -> actor::Result<()> {
    actor::run(async {
        println!("arbiter: {}", actor::get_arbiter().await?.uid());
        actor::open_nursery(|n| async move {
            // Two actors may share a name; one more with its own.
            for name in ["worker", "worker", "logger"] {
                n.start_actor(name).await?;
            }
            let logger = actor::wait_for_actor_within("logger", Duration::from_secs(10)).await?;
            println!("wait_for_actor(logger) -> {}", logger.run(whoami, ()).await?);
            while actor::list_actors().await?.iter().filter(|e| e.uid.name == "worker").count() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for entry in actor::list_actors().await? {
                println!("registered: {} at {}", entry.uid, entry.addr);
            }
            let nobody = actor::find_actor("nobody").await?;
            println!("find_actor(nobody) -> {}", if nobody.is_some() { "found" } else { "none" });

            // Wait for an actor that does not exist yet: it appears a moment later.
            let waiter = tokio::spawn(actor::wait_for_actor_within("latecomer", Duration::from_secs(10)));
            tokio::time::sleep(Duration::from_millis(200)).await;
            n.start_actor("latecomer").await?;
            let late = waiter.await.map_err(actor::Error::app)??;
            println!("wait_for_actor(latecomer) resolved -> {}", late.run(whoami, ()).await?);

            // And one that never comes: a clean timeout.
            match actor::wait_for_actor_within("never", Duration::from_millis(300)).await {
                Err(e @ actor::Error::Timeout { .. }) => println!("wait_for_actor(never) -> {e}"),
                other => println!("wait_for_actor(never) -> unexpected {other:?}"),
            }
            Ok(())
        })
        .await
    })
}
