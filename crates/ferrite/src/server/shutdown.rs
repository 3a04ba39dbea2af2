//! Graceful shutdown: on SIGTERM or ctrl-c the server stops accepting connections and lets the
//! requests in flight (streams included) finish; a second signal exits at once.

/// Resolves on the first SIGTERM or ctrl-c, and arms the second one to exit immediately.
pub async fn signal() {
    first_signal().await;
    eprintln!("ferrite: shutting down: no new connections, waiting for requests in flight (signal again to quit)");
    tokio::spawn(async {
        first_signal().await;
        eprintln!("ferrite: second signal, exiting now");
        std::process::exit(130);
    });
}

async fn first_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
