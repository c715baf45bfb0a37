//! Three levels of nurseries: root -> manager -> worker.
//!
//! Each manager opens its own nursery and runs a worker. A worker's result
//! travels up to the root; so does a worker's error, wrapped by the manager
//! that relayed it, with both actors named.
//!
//! Run: `cargo run --example nested_actor_tree` (exits with status 1: the
//! second branch fails on purpose)

#[actor::remote]
async fn leaf_work(x: u64, fail: bool) -> actor::Result<u64> {
    if fail {
        return Err(actor::Error::msg(format!("leaf refuses to square {x}")));
    }
    Ok(x * x)
}

#[actor::remote]
async fn manage(x: u64, fail: bool) -> actor::Result<u64> {
    actor::open_nursery(|n| async move {
        let worker = n.run_in_actor("worker", leaf_work, (x, fail)).await?;
        let squared = worker.result().await?;
        Ok(squared + 1)
    })
    .await
}

fn main() -> actor::Result<()> {
    actor::run(async {
        let ok = actor::open_nursery(|n| async move {
            let manager = n.run_in_actor("manager_ok", manage, (7, false)).await?;
            manager.result().await
        })
        .await?;
        println!("three levels deep and back: 7*7+1 = {ok}");

        let failed = actor::open_nursery(|n| async move {
            let manager = n.run_in_actor("manager_failing", manage, (3, true)).await?;
            manager.result().await
        })
        .await;
        match &failed {
            Err(e) => println!("the leaf's error reached the root:\n{e}"),
            Ok(v) => println!("unexpected success: {v}"),
        }
        failed.map(|_| ())
    })
}
