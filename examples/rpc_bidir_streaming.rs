//! A context: a long-lived remote task with a first value, a bidirectional
//! ping/pong stream, and a final result.
//!
//! Run: `cargo run --example rpc_bidir_streaming`

/// Answers every "ping N" with "pong N" until the caller closes its side, then
/// returns how many pings it answered.
#[actor::remote]
async fn pong_server(
    greeting: String,
    mut ctx: actor::Context<String, String, String>,
) -> actor::Result<u64> {
    ctx.started(format!("{greeting}, ready to pong")).await?;
    let (tx, mut rx) = ctx.stream()?;
    let mut answered = 0;
    while let Some(msg) = rx.recv().await {
        let msg = msg?;
        let n = msg.strip_prefix("ping ").unwrap_or(&msg);
        tx.send(format!("pong {n}")).await?;
        answered += 1;
    }
    Ok(answered)
}

fn main() -> actor::Result<()> {
    actor::run(async {
        actor::open_nursery(|n| async move {
            let portal = n.start_actor("ponger").await?;
            let (mut ctx, first) = portal.open_context(pong_server, ("hello".into(),)).await?;
            println!("started: {first}");
            let (tx, mut rx) = ctx.stream()?;
            // Send and receive from different tasks: the stream is bidirectional.
            let sender = tokio::spawn(async move {
                for i in 0..5 {
                    tx.send(format!("ping {i}")).await?;
                }
                tx.close().await
            });
            while let Some(reply) = rx.recv().await {
                println!("received: {}", reply?);
            }
            sender.await.map_err(actor::Error::app)??;
            println!("the remote task answered {} pings", ctx.result().await?);
            Ok(())
        })
        .await
    })
}
