//! A failing actor cancels its siblings (one-cancels-all).
//!
//! Two daemons serve calls while a third actor's main function fails. The
//! nursery cancels the daemons, reaps everything, and returns the remote error,
//! which names the actor it came from, the error's type and its causes. The
//! program then exits non-zero, printing that error.
//!
//! Run: `cargo run --example remote_error_propagation` (exits with status 1)

#[derive(Debug, thiserror::Error)]
#[error("the cellar door is locked")]
struct DoorLocked(#[source] std::io::Error);

#[actor::remote]
async fn open_the_door() -> Result<String, DoorLocked> {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Err(DoorLocked(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no key on the ring")))
}

#[actor::remote]
async fn idle() -> actor::Result<()> {
    Ok(())
}

fn main() -> actor::Result<()> {
    actor::run(async {
        let outcome = actor::open_nursery(|n| async move {
            for name in ["sibling_a", "sibling_b"] {
                let p = n.start_actor(name).await?;
                p.run(idle, ()).await?;
                println!("daemon `{}` is serving", p.uid());
            }
            n.run_in_actor("door_opener", open_the_door, ()).await?;
            println!("waiting: the nursery will notice the failure and cancel both daemons");
            Ok(())
        })
        .await;
        if let Err(e) = &outcome {
            println!("the nursery returned an error after reaping every actor:\n{e}");
        }
        outcome
    })
}
