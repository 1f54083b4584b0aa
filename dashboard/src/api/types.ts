// Short names for the generated schema types the app uses.
import type { components } from "./schema";

type Schemas = components["schemas"];
export type Store = Schemas["Store"];
export type StoreList = Schemas["StoreList"];
export type StoreStatus = Schemas["StoreStatus"];
export type StoreEvent = Schemas["Event"];
export type EventType = Schemas["EventType"];
export type Problem = Schemas["Problem"];
export type FieldError = Schemas["FieldError"];
export type Me = Schemas["Me"];
export type Session = Schemas["Session"];
export type BlueprintSummary = Schemas["BlueprintSummary"];
export type Blueprint = Schemas["Blueprint"];
