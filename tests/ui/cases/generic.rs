// A child finds a remote function by name: it needs one concrete signature.
#[actor::remote]
async fn echo<T: Send>(x: T) -> actor::Result<T> {
    Ok(x)
}

fn main() {}
