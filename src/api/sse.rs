//! The live event stream of one store: polls the database with the keyset cursor
//! (simple, and right with several replicas, since any replica may have written the
//! event) — every 500 ms while the store is provisioning or being deleted, backing off
//! to every 4 s while a ready or failed store has no news (a tab left open on it should
//! cost next to nothing) — and turns what it finds into server-sent events: `store_event` (with the
//! event id as SSE `id`), `store` when status or progress changed, `deleted` at the end.
//!
//! Ends when the store is gone, when the token it was opened with is revoked or expires
//! or its account stops being an admin (checked every `REAUTH`; the client's reconnect
//! then gets the 401, or the 404 of a store that is not its own), or when the server
//! shuts down. Reads through `crate::db` only.

use super::auth::{Caller, account_for_token};
use super::dto::{Event, Store, StoreDeleted, StreamMessage};
use super::limits::StreamSlot;
use super::state::AppState;
use crate::db::{Role, StoreEvent};
use crate::domain::StoreStatus;
use crate::telemetry::error_chain;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use poem::web::sse;
use poem_openapi::types::ToJSON;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;
use uuid::Uuid;

/// How often a stream asks the database for news while its store is changing, and
/// right after any news.
pub const POLL: Duration = Duration::from_millis(500);
/// The longest pause between reads for a ready or failed store with no news: each read
/// that finds nothing doubles the pause, from `POLL` up to this.
pub const IDLE_POLL: Duration = Duration::from_secs(4);
/// How often a comment is sent to keep idle connections open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a stream checks that its token still stands (sign-out, expiry, a changed
/// role), so an open stream never outlives the session it was opened with by more.
pub const REAUTH: Duration = Duration::from_secs(10);
/// Most events read per poll. A stream further behind (opened from the start of a long
/// log) reads the next batch without waiting, one batch per step, so its memory stays
/// one batch and the token check and shutdown still come between batches.
const BATCH: u64 = 200;

struct Cursor {
    state: Arc<AppState>,
    /// `None`: an admin (sees any store).
    owner: Option<Uuid>,
    token_hash: String,
    checked: tokio::time::Instant,
    id: Uuid,
    after: Option<i64>,
    latest: Option<StoreEvent>,
    shown: Option<(StoreStatus, DateTime<Utc>, Option<i64>)>,
    first: bool,
    /// The last read filled a whole batch: more is waiting, read it without a pause.
    behind: bool,
    /// The store was ready or failed at the last read: nothing is expected soon.
    settled: bool,
    /// Reads in a row that found nothing to send.
    quiet: u32,
    done: bool,
    /// The request's span (with its request id): the stream is read after the handler
    /// returned, outside it, so each step re-enters it for its log lines.
    span: tracing::Span,
    /// Counts the stream against its account's cap until it ends or is dropped.
    _slot: StreamSlot,
}

/// The messages of one store's stream.
pub fn store_stream(
    state: Arc<AppState>,
    caller: Caller,
    id: Uuid,
    after: Option<i64>,
    slot: StreamSlot,
) -> BoxStream<'static, StreamMessage> {
    let cursor = Cursor {
        state,
        owner: (!caller.is_admin()).then_some(caller.user.id),
        token_hash: caller.token_hash,
        checked: tokio::time::Instant::now(),
        id,
        after,
        latest: None,
        shown: None,
        first: true,
        behind: false,
        settled: false,
        quiet: 0,
        done: false,
        span: tracing::Span::current(),
        _slot: slot,
    };
    stream::unfold(cursor, |mut c| {
        let span = c.span.clone();
        async move {
        if c.done {
            return None;
        }
        if !c.first && !c.behind {
            tokio::select! {
                // Never past the next token check: a quiet stream notices a sign-out
                // on time too.
                _ = tokio::time::sleep(
                    pause(c.settled, c.quiet).min(REAUTH.saturating_sub(c.checked.elapsed()))
                ) => {}
                _ = c.state.shutdown.cancelled() => return None,
            }
        }
        if c.checked.elapsed() >= REAUTH {
            match account_for_token(&c.state, &c.token_hash).await {
                Ok(Some(user)) => {
                    let owner = (user.role != Role::Admin).then_some(user.id);
                    // An admin made a member may no longer see this store: end the
                    // stream as for a revoked token (not with `deleted`, the store is
                    // still there); the reconnect gets the answer the new role gets.
                    if c.owner.is_none() && owner.is_some() {
                        return None;
                    }
                    c.owner = owner;
                    c.checked = tokio::time::Instant::now();
                }
                Ok(None) => return None,
                // The database is away: keep the stream, and ask again next poll.
                Err(e) => {
                    tracing::warn!(store_id = %c.id, error = %error_chain(&e), "event stream: could not check the token");
                }
            }
        }
        if c.behind && c.state.shutdown.is_cancelled() {
            return None;
        }
        let batch = poll(&mut c).await;
        c.quiet = if batch.is_empty() { c.quiet.saturating_add(1) } else { 0 };
        c.first = false;
        Some((batch, c))
        }
        .instrument(span)
    })
    .flat_map(stream::iter)
    .boxed()
}

/// The pause before the next read: `POLL` while the store changes or just changed,
/// doubling with every quiet read of a settled store, up to `IDLE_POLL`.
fn pause(settled: bool, quiet: u32) -> Duration {
    if !settled {
        return POLL;
    }
    POLL.saturating_mul(1 << quiet.min(8)).min(IDLE_POLL)
}

/// What one read of the log found.
enum Read {
    CaughtUp,
    /// A whole batch: there may be more.
    Behind,
    Failed,
}

/// Reads one batch of events after the cursor.
async fn new_events(c: &mut Cursor, out: &mut Vec<StreamMessage>) -> Read {
    match c.state.db.list_events(c.id, c.after, BATCH).await {
        Ok(events) => {
            let full = events.len() as u64 == BATCH;
            for e in events {
                c.after = Some(e.id);
                out.push(StreamMessage::Event(Event::from(e.clone())));
                c.latest = Some(e);
            }
            if full { Read::Behind } else { Read::CaughtUp }
        }
        Err(e) => {
            tracing::warn!(store_id = %c.id, error = %error_chain(&e), "event stream: could not read events; retrying");
            Read::Failed
        }
    }
}

async fn poll(c: &mut Cursor) -> Vec<StreamMessage> {
    let mut out = Vec::new();
    // The store is told once the events before it are: its progress names the latest.
    c.behind = false;
    match new_events(c, &mut out).await {
        Read::CaughtUp => {}
        Read::Behind => {
            c.behind = true;
            return out;
        }
        Read::Failed => return out,
    }
    let store = match c.owner {
        Some(owner) => c.state.db.get_user_store(owner, c.id).await,
        None => c.state.db.get_store(c.id).await,
    };
    match store {
        Ok(Some(store)) => {
            c.settled = matches!(store.status, StoreStatus::Ready | StoreStatus::Failed);
            if c.latest.is_none() {
                // Started from a cursor: the latest event is before it.
                if let Ok(mut latest) = c.state.db.latest_events(&[c.id]).await {
                    c.latest = latest.pop();
                }
            }
            let key = (
                store.status,
                store.updated_at,
                c.latest.as_ref().map(|e| e.id),
            );
            if c.shown != Some(key) {
                c.shown = Some(key);
                out.push(StreamMessage::Store(Box::new(Store::from_db(
                    store,
                    c.latest.as_ref(),
                ))));
            }
        }
        Ok(None) => {
            // The final event is written with the removal; read it before saying so.
            if let Read::Behind = new_events(c, &mut out).await {
                c.behind = true;
                return out;
            }
            out.push(StreamMessage::Deleted(StoreDeleted { id: c.id }));
            c.done = true;
        }
        Err(e) => {
            tracing::warn!(store_id = %c.id, error = %error_chain(&e), "event stream: could not read the store; retrying");
        }
    }
    out
}

/// One stream message as a server-sent event.
pub fn to_sse(message: StreamMessage) -> sse::Event {
    match &message {
        StreamMessage::Event(e) => sse::Event::message(e.to_json_string())
            .event_type("store_event")
            .id(e.id.to_string()),
        StreamMessage::Store(s) => sse::Event::message(s.to_json_string()).event_type("store"),
        StreamMessage::Deleted(d) => sse::Event::message(d.to_json_string()).event_type("deleted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_store_is_read_less_and_less_often_and_a_changing_one_every_poll() {
        // Provisioning or deleting: every POLL, however quiet.
        for quiet in [0, 1, 5, 1000] {
            assert_eq!(pause(false, quiet), POLL);
        }
        // Ready or failed: 0.5, 1, 2, 4 s, then 4 s for good.
        let pauses: Vec<u64> = (0..7).map(|q| pause(true, q).as_millis() as u64).collect();
        assert_eq!(pauses, [500, 1000, 2000, 4000, 4000, 4000, 4000]);
        assert_eq!(pause(true, u32::MAX), IDLE_POLL);
    }
}
