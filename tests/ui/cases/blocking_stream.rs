// Stream functions run on the actor's event loop: they must be async.
#[actor::remote]
fn count(n: u64, out: actor::Yielder<u64>) -> actor::Result<()> {
    let _ = (n, out);
    Ok(())
}

fn main() {}
