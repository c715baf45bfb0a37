//! Spawn one actor, run a function in it, and collect its result.
//!
//! `run_in_actor` starts a child process (this same binary) that runs
//! `cellar_door` as its main function and exits when it returns; the nursery
//! block cannot end before that child is reaped.
//!
//! Run: `cargo run --example actor_spawning_and_causality`

#[actor::remote]
async fn cellar_door(name: String) -> actor::Result<String> {
    let me = actor::uid()?;
    // A child's stdout and stderr are the terminal of the program that started the tree.
    println!("[{me}] thinking about {name}...");
    Ok(format!(
        "{name} (speaking from actor `{me}` in pid {}): quoth the raven, nevermore",
        std::process::id()
    ))
}

fn main() -> actor::Result<()> {
    actor::run(async {
        actor::open_nursery(|n| async move {
            let portal = n.run_in_actor("some_linguist", cellar_door, ("poe".into(),)).await?;
            let line: String = portal.result().await?;
            println!("{line}");
            Ok(())
        })
        .await?;
        println!(
            "the nursery is closed: every actor it spawned has been reaped (root pid {})",
            std::process::id()
        );
        Ok(())
    })
}
