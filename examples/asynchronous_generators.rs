//! A remote stream: the remote actor yields values, the root reads a while,
//! then drops the stream, which cancels the producer; the actor stays up and
//! serves the next call.
//!
//! Run: `cargo run --example asynchronous_generators`

use std::time::Duration;

#[actor::remote]
async fn stream_forever(out: actor::Yielder<u64>) -> actor::Result<()> {
    let mut i = 0;
    loop {
        out.send(i).await?;
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actor::remote]
async fn ping() -> actor::Result<String> {
    Ok("still serving".into())
}

fn main() -> actor::Result<()> {
    actor::run(async {
        actor::open_nursery(|n| async move {
            let portal = n.start_actor("donny").await?;
            let mut stream = portal.open_stream_from(stream_forever, ()).await?;
            while let Some(value) = stream.recv().await {
                let value = value?;
                println!("received {value}");
                if value == 9 {
                    break;
                }
            }
            drop(stream);
            println!("dropped the stream after 10 items; the producer was cancelled");
            println!("`{}` says: {}", portal.uid(), portal.run(ping, ()).await?);
            Ok(())
        })
        .await
    })
}
