// A remote function must return a Result.
#[actor::remote]
async fn double(x: u32) -> u32 {
    x * 2
}

fn main() {}
