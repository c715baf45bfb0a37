//! A streaming service of four processes: two producers each stream numbers,
//! an aggregator merges both streams and removes duplicates, and the root
//! prints the merged stream.
//!
//! The aggregator runs its producers in its own nursery: if one fails, the
//! aggregator's nursery cancels the other and the failure reaches the root.
//!
//! Run: `cargo run --example full_fledged_streaming_service`

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;

/// Streams the multiples of `step` below `limit`, a little apart.
#[actor::remote]
async fn multiples(step: u64, limit: u64, out: actor::Yielder<u64>) -> actor::Result<()> {
    for x in (0..limit).step_by(step as usize) {
        out.send(x).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Merges the two producers' streams as items arrive, forwarding each value
/// the first time it is seen.
#[actor::remote]
async fn aggregate(limit: u64, out: actor::Yielder<u64>) -> actor::Result<()> {
    actor::open_nursery(|n| async move {
        let twos = n.start_actor("multiples_of_2").await?;
        let threes = n.start_actor("multiples_of_3").await?;
        let a = twos.open_stream_from(multiples, (2, limit)).await?;
        let b = threes.open_stream_from(multiples, (3, limit)).await?;
        let mut merged = futures::stream::select(a, b);
        let mut seen = HashSet::new();
        while let Some(x) = merged.next().await {
            let x = x?;
            if seen.insert(x) {
                out.send(x).await?;
            }
        }
        Ok(())
    })
    .await
}

fn main() -> actor::Result<()> {
    actor::run(async {
        let limit = 60;
        actor::open_nursery(|n| async move {
            let aggregator = n.start_actor("aggregator").await?;
            let mut merged = aggregator.open_stream_from(aggregate, (limit,)).await?;
            let mut all = Vec::new();
            while let Some(x) = merged.recv().await {
                let x = x?;
                println!("merged: {x}");
                all.push(x);
            }
            all.sort_unstable();
            let expected: Vec<u64> = (0..limit).filter(|x| x % 2 == 0 || x % 3 == 0).collect();
            println!(
                "{} distinct values from 2 producers through 1 aggregator; complete: {}",
                all.len(),
                all == expected
            );
            Ok(())
        })
        .await
    })
}
