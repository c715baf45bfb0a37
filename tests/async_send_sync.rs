//! Every public handle can cross tasks and threads: checked at compile time.

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync_where_users_need_it() {
    send_sync::<actor::Portal>();
    send_sync::<actor::ResultPortal<String>>();
    send_sync::<actor::Nursery>();
    send_sync::<actor::Error>();
    send_sync::<actor::Config>();
    send_sync::<actor::StreamSender<u64>>();
    send_sync::<actor::Yielder<u64>>();
    send_sync::<actor::State<u64>>();
    send::<actor::StreamReceiver<u64>>();
    send::<actor::ContextHandle<u64, u64, u64>>();
    send::<actor::Context<(), u64, u64>>();
    send_sync::<actor::transport::Sender>();
    send::<actor::transport::Receiver>();
    send::<actor::transport::Channel>();
}

#[test]
fn nursery_and_portal_futures_are_send() {
    fn is_send<F: std::future::Future + Send>(_: F) {}
    #[actor::remote]
    async fn f(x: u64) -> actor::Result<u64> {
        Ok(x)
    }
    is_send(actor::open_nursery(|n| async move {
        let p = n.start_actor("x").await?;
        p.run(f, (1,)).await?;
        let r = n.run_in_actor("y", f, (2,)).await?;
        r.result().await?;
        Ok(())
    }));
}
