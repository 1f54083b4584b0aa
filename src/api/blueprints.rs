//! `GET /api/blueprints` and `GET /api/blueprints/{engine}`: the engines a store can be
//! built from, with the JSON Schema of their parameters so that a client can build its
//! form. Public (no token needed): blueprints hold no secrets.
//!
//! Reads the catalog only.

use super::dto::{Blueprint, BlueprintSummary, JsonObject};
use super::problem::{ApiError, Failure, error_set};
use super::spec::ApiTags;
use super::state::AppState;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use std::sync::Arc;

error_set! {
    /// Listing blueprints.
    ListBlueprintErrors = [429, 500];
    /// Reading one blueprint.
    GetBlueprintErrors = [404, 429, 500];
}

#[derive(ApiResponse)]
pub enum ListBlueprintsResponse {
    /// Every engine, sorted by name.
    #[oai(status = 200)]
    Ok(Json<Vec<BlueprintSummary>>),
}

#[derive(ApiResponse)]
pub enum GetBlueprintResponse {
    /// The engine and its parameters' JSON Schema.
    #[oai(status = 200)]
    Ok(Json<Blueprint>),
}

pub struct BlueprintsApi;

#[OpenApi(tag = "ApiTags::Blueprints")]
impl BlueprintsApi {
    /// List engines
    ///
    /// Every engine a store can be built from: name, blueprint version, description and
    /// plans.
    #[oai(
        path = "/api/blueprints",
        method = "get",
        operation_id = "listBlueprints"
    )]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
    ) -> Result<ListBlueprintsResponse, Failure<ListBlueprintErrors>> {
        Ok(ListBlueprintsResponse::Ok(Json(
            state
                .catalog
                .iter()
                .map(|b| BlueprintSummary {
                    engine: b.name.clone(),
                    version: b.version.clone(),
                    description: b.description.clone(),
                    plans: b.plans().map(str::to_owned).collect(),
                })
                .collect(),
        )))
    }

    /// Get an engine
    ///
    /// One engine with the JSON Schema (draft 2020-12) of its parameters: titles,
    /// descriptions, defaults and constraints, to build a form from. `params` of
    /// `POST /api/stores` are validated against it.
    #[oai(
        path = "/api/blueprints/:engine",
        method = "get",
        operation_id = "getBlueprint"
    )]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        /// The engine's name, e.g. `woocommerce`.
        engine: Path<String>,
    ) -> Result<GetBlueprintResponse, Failure<GetBlueprintErrors>> {
        let bp = state.catalog.get(&engine.0).map_err(|_| {
            ApiError::not_found(format!(
                "no engine `{}`; known engines: {}",
                engine.0,
                state.catalog.names().join(", ")
            ))
        })?;
        let parameters = match bp.parameters_schema() {
            serde_json::Value::Object(map) => JsonObject(map.clone()),
            _ => JsonObject::default(),
        };
        Ok(GetBlueprintResponse::Ok(Json(Blueprint {
            engine: bp.name.clone(),
            version: bp.version.clone(),
            description: bp.description.clone(),
            plans: bp.plans().map(str::to_owned).collect(),
            parameters,
        })))
    }
}
