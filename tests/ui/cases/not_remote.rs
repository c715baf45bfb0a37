// A function without #[actor::remote] passed where a remote function is expected.
async fn plain(x: u32) -> actor::Result<u32> {
    Ok(x)
}

async fn call(p: &actor::Portal) -> actor::Result<u32> {
    p.run(plain, (1,)).await
}

fn main() {
    let _ = call;
}
