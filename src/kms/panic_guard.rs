//! Turns a panic inside one request handler into an error for that request
//! only (`core.md` §1.6: `Internal "kms request failed"`, class `panic`).
//!
//! The handler's future is polled inside `catch_unwind`; a panic ends that
//! future and nothing else. Shared state stays usable: every lock in the
//! request path recovers from poisoning, and slots are released by `Drop`
//! during unwinding.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The handler panicked; the payload is dropped unread (it is never logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// Runs `future`, returning `Err(Panicked)` if polling it panics.
pub fn catch_panic<F: Future>(future: F) -> CatchPanic<F> {
    CatchPanic {
        inner: Box::pin(future),
    }
}

pub struct CatchPanic<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_payload) => Poll::Ready(Err(Panicked)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_one_error_and_values_pass_through() {
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        #[allow(clippy::panic)]
        let caught = catch_panic(async {
            tokio::task::yield_now().await;
            panic!("secret payload");
        })
        .await;
        std::panic::set_hook(hook);
        assert_eq!(caught, Err::<(), _>(Panicked));
    }
}
