//! Sessions: `POST /api/auth/login` (email and password → a bearer token),
//! `POST /api/auth/logout` (revokes the calling token) and `GET /api/me`.
//!
//! A wrong email and a wrong password get the same answer in the same time (an unknown
//! account is verified against a dummy hash). Login attempts are limited per client IP
//! (at the edge) and per account (here). Must not log passwords or tokens.

use super::auth::BearerAuth;
use super::body::{CheckBody, JsonBody};
use super::dto::{LoginRequest, Me, Session};
use super::problem::{ApiError, Failure, error_set};
use super::spec::ApiTags;
use super::state::AppState;
use crate::db::User;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use std::sync::Arc;

error_set! {
    /// Signing in.
    LoginErrors = [400, 401, 408, 413, 415, 422, 429, 500, 503];
    /// Calls that only need a valid token.
    TokenErrors = [401, 429, 500, 503];
}

impl CheckBody for LoginRequest {}

#[derive(ApiResponse)]
pub enum LoginResponse {
    /// Signed in: the token to send as `Authorization: Bearer <token>`.
    #[oai(status = 200)]
    Ok(Json<Session>),
}

#[derive(ApiResponse)]
pub enum LogoutResponse {
    /// The token is revoked.
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
pub enum MeResponse {
    /// The signed-in account.
    #[oai(status = 200)]
    Ok(Json<Me>),
}

pub struct SessionApi;

async fn me_of(state: &AppState, user: &User) -> Result<Me, ApiError> {
    let store_count = state.db.count_user_stores(user.id).await?;
    Ok(Me {
        id: user.id,
        email: user.email.clone(),
        role: user.role.into(),
        store_limit: user.store_limit,
        store_count,
    })
}

#[OpenApi(tag = "ApiTags::Auth")]
impl SessionApi {
    /// Sign in
    ///
    /// Exchanges an email address and password for a bearer token that expires after
    /// the server's token lifetime (12 hours by default). A wrong email and a wrong
    /// password get the same 401. Attempts are limited per client IP, and failed ones
    /// per account: once an account's failures use its quota up, every sign-in to it
    /// is refused until the quota refills (429 with `Retry-After`).
    #[oai(path = "/api/auth/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&Arc<AppState>>,
        body: JsonBody<LoginRequest>,
    ) -> Result<LoginResponse, Failure<LoginErrors>> {
        let LoginRequest { email, password } = body.0;
        // An address that is not plausible cannot have an account: it gets the answer
        // of an unknown account (after the same work), not a hint about the rules.
        let email = crate::auth::normalize_email(&email).ok();
        let account_key = email.clone().unwrap_or_else(|| "<invalid>".to_owned());
        let admit = || {
            state
                .limits
                .login_account
                .admit(&account_key)
                .inspect_err(|_| {
                    state.metrics.rate_limited.inc();
                })
        };
        admit()?;
        let user = match &email {
            Some(email) => state.db.user_by_email(email).await?,
            None => None,
        };
        let ok = crate::auth::verify_password(
            user.as_ref().map(|u| u.password_hash.as_str()),
            &password,
        )
        .await;
        // Checks queue for a hashing slot, so many may have been admitted before the
        // failures that locked the account were counted: once it is locked, an
        // answer would still tell a guess's outcome, so every check that ends after
        // that is refused alike, whatever the password.
        admit()?;
        let Some(user) = user.filter(|_| ok) else {
            state.limits.login_account.failed(&account_key);
            tracing::info!("login refused: wrong email or password");
            return Err(ApiError::unauthorized("wrong email or password").into());
        };
        // Before the token exists: a failure here must not leave a valid token that
        // nobody was given.
        let me = me_of(&state, &user).await?;
        let (token, hash) = crate::auth::generate_token();
        let expires_at = crate::db::plus(crate::db::now(), state.settings.token_ttl);
        // Only if the password checked is still the account's: a reset that happened
        // while this check queued revoked every token, and this one must not outlive it.
        let issued = state
            .db
            .insert_token_for_password(
                user.id,
                &user.password_hash,
                &hash,
                "login",
                Some(expires_at),
            )
            .await?;
        if issued.is_none() {
            tracing::info!(user_id = %user.id, "login refused: the password changed during the check");
            return Err(ApiError::unauthorized("wrong email or password").into());
        }
        tracing::info!(user_id = %user.id, "signed in");
        Ok(LoginResponse::Ok(Json(Session {
            token,
            expires_at,
            user: me,
        })))
    }

    /// Sign out
    ///
    /// Revokes the token the request is made with.
    #[oai(path = "/api/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
    ) -> Result<LogoutResponse, Failure<TokenErrors>> {
        let caller = auth.0;
        state.db.delete_token(&caller.token_hash).await?;
        state.tokens.evict(&caller.token_hash);
        tracing::info!(user_id = %caller.user.id, "signed out");
        Ok(LogoutResponse::NoContent)
    }

    /// The signed-in account
    ///
    /// Who the token belongs to, with the account's store limit and how many stores it
    /// has.
    #[oai(path = "/api/me", method = "get", operation_id = "getMe")]
    async fn me(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
    ) -> Result<MeResponse, Failure<TokenErrors>> {
        let caller = auth.0;
        Ok(MeResponse::Ok(Json(me_of(&state, &caller.user).await?)))
    }
}
