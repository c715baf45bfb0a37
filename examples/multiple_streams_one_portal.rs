//! Two concurrent streams over one portal (one channel), read side by side.
//!
//! Run: `cargo run --example multiple_streams_one_portal`

use futures::StreamExt;

#[actor::remote]
async fn letters(word: String, out: actor::Yielder<String>) -> actor::Result<()> {
    for c in word.chars() {
        out.send(c.to_string()).await?;
    }
    Ok(())
}

fn main() -> actor::Result<()> {
    actor::run(async {
        actor::open_nursery(|n| async move {
            let portal = n.start_actor("speller").await?;
            let first = portal.open_stream_from(letters, ("structured".into(),)).await?;
            let second = portal.open_stream_from(letters, ("concurrency".into(),)).await?;
            let (a, b) = tokio::join!(first.collect::<Vec<_>>(), second.collect::<Vec<_>>());
            let a: actor::Result<Vec<String>> = a.into_iter().collect();
            let b: actor::Result<Vec<String>> = b.into_iter().collect();
            println!("stream 1 spelled: {}", a?.concat());
            println!("stream 2 spelled: {}", b?.concat());
            Ok(())
        })
        .await
    })
}
