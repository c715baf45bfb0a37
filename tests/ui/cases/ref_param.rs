// Arguments are decoded from a message: a parameter cannot borrow.
#[actor::remote]
async fn greet(name: &str) -> actor::Result<String> {
    Ok(format!("hello {name}"))
}

fn main() {}
