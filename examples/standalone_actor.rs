//! A standalone actor: a program started on its own that joins an arbiter run
//! by another program, and is called by a third. Three terminals:
//!
//! ```sh
//! cargo run -p procactor-arbiter --bin arbiter -- --bind tcp://127.0.0.1:7616
//! ACTOR_ARBITER=tcp://127.0.0.1:7616 cargo run --example standalone_actor -- serve
//! ACTOR_ARBITER=tcp://127.0.0.1:7616 cargo run --example standalone_actor -- call 6 7
//! ```
//!
//! `serve` registers as `calculator` and serves until SIGTERM or Ctrl-C, then
//! leaves the registry; `call` finds it by name and multiplies remotely;
//! `list` prints the registry.
//!
//! With the `etcd` feature, `ACTOR_ARBITER=etcd://127.0.0.1:2379` for all
//! three (and no daemon) keeps the registry in etcd instead.
//!
//! Across hosts, give each program its host's address to listen on
//! (`ACTOR_BIND=tcp://10.0.0.5:0`) and the cluster's TLS files
//! (`ACTOR_TLS_CA`, `ACTOR_TLS_CERT`, `ACTOR_TLS_KEY`): see the README.

use std::time::Duration;

#[actor::remote]
async fn multiply(a: i64, b: i64) -> actor::Result<i64> {
    Ok(a * b)
}

fn main() -> actor::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            let config = actor::Config::from_env()?.name("calculator");
            actor::run_with(config, async {
                // With the registry in etcd there is no arbiter to name.
                match actor::get_arbiter().await {
                    Ok(arbiter) => println!("calculator serving; arbiter at {}", arbiter.uid()),
                    Err(why) => println!("calculator serving; {why}"),
                }
                actor::serve().await
            })
        }
        Some("call") => {
            let parse = |i: usize| args.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
            let (a, b) = (parse(1), parse(2));
            let config = actor::Config::from_env()?.name("caller");
            actor::run_with(config, async move {
                let calc = actor::wait_for_actor_within("calculator", Duration::from_secs(10)).await?;
                println!("{a} * {b} = {} (computed by `{}`)", calc.run(multiply, (a, b)).await?, calc.uid());
                Ok(())
            })
        }
        Some("list") => {
            let config = actor::Config::from_env()?.name("lister");
            actor::run_with(config, async {
                for entry in actor::list_actors().await? {
                    println!("registered: {} at {}", entry.uid, entry.addr);
                }
                Ok(())
            })
        }
        _ => {
            eprintln!("usage: standalone_actor serve | call A B | list");
            std::process::exit(2)
        }
    }
}
