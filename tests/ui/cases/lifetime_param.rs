// A parameter type holding a lifetime borrows too.
#[actor::remote]
async fn first<'a>(words: std::borrow::Cow<'a, str>) -> actor::Result<String> {
    Ok(words.into_owned())
}

fn main() {}
