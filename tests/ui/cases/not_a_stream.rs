// A plain remote function is not a stream function.
#[actor::remote]
async fn single(x: u32) -> actor::Result<u32> {
    Ok(x)
}

async fn open(p: &actor::Portal) -> actor::Result<()> {
    let _s = p.open_stream_from(single, (1,)).await?;
    Ok(())
}

fn main() {
    let _ = open;
}
