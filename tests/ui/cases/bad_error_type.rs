// The error type must be one the runtime can send.
struct NotAnError;

#[actor::remote]
async fn double(x: u32) -> Result<u32, NotAnError> {
    Ok(x * 2)
}

fn main() {}
