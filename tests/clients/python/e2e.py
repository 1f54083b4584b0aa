"""Drives a live Storeplane server through a Python client that openapi-python-client
generated from openapi/openapi.json (nobody here wrote it): sign in, list engines,
create a store, read it until it is ready, read its events, delete it, and see it go.

    python e2e.py --client-dir DIR --url http://127.0.0.1:PORT \
        --email admin@example.test --password-file FILE

DIR holds the generated package `storeplane_api_client`. Exits non-zero on the first
broken expectation, saying what was expected and what came back.
"""

import argparse
import sys
import time
import uuid


def fail(message):
    print(f"e2e: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def expect(condition, message):
    if not condition:
        fail(message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--client-dir", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    args = parser.parse_args()
    sys.path.insert(0, args.client_dir)

    from storeplane_api_client import AuthenticatedClient, Client
    from storeplane_api_client.api.auth import get_me, login, logout
    from storeplane_api_client.api.blueprints import get_blueprint, list_blueprints
    from storeplane_api_client.api.stores import (
        create_store,
        delete_store,
        get_store,
        list_store_events,
        list_stores,
    )
    from storeplane_api_client.api.system import health
    from storeplane_api_client.models import (
        CreateStoreRequest,
        CreateStoreRequestParams,
        LoginRequest,
        Problem,
        Store,
        StoreStatus,
    )

    with open(args.password_file, encoding="utf-8") as f:
        password = f.read().strip()

    anonymous = Client(base_url=args.url, raise_on_unexpected_status=True)
    r = health.sync_detailed(client=anonymous)
    expect(r.status_code == 200, f"health: {r.status_code}")

    r = login.sync_detailed(client=anonymous, body=LoginRequest(email=args.email, password="wrong password"))
    expect(r.status_code == 401 and isinstance(r.parsed, Problem), f"wrong password: {r.status_code} {r.content!r}")
    expect(r.parsed.detail == "wrong email or password", f"401 detail: {r.parsed.detail}")

    r = login.sync_detailed(client=anonymous, body=LoginRequest(email=args.email, password=password))
    expect(r.status_code == 200, f"login: {r.status_code} {r.content!r}")
    session = r.parsed
    expect(session.token.startswith("sp_"), "token prefix")
    client = AuthenticatedClient(base_url=args.url, token=session.token, raise_on_unexpected_status=True)

    me = get_me.sync(client=client)
    expect(me.email == args.email.lower(), f"me: {me}")

    engines = list_blueprints.sync(client=anonymous)
    names = [b.engine for b in engines]
    expect("woocommerce" in names and "medusa" in names, f"engines: {names}")
    bp = get_blueprint.sync(client=anonymous, engine="woocommerce")
    expect("plan" in bp.parameters.additional_properties.get("properties", {}), "parameter schema")

    name = f"py-{uuid.uuid4().hex[:8]}"
    bad = create_store.sync_detailed(
        client=client, body=CreateStoreRequest(name="Not Valid", engine="woocommerce")
    )
    expect(bad.status_code == 422 and isinstance(bad.parsed, Problem), f"bad name: {bad.status_code}")
    expect([e.field for e in bad.parsed.errors] == ["name"], f"bad name fields: {bad.parsed.errors}")

    r = create_store.sync_detailed(
        client=client,
        body=CreateStoreRequest(
            name=name,
            engine="woocommerce",
            params=CreateStoreRequestParams.from_dict({"plan": "small"}),
        ),
    )
    expect(r.status_code == 201 and isinstance(r.parsed, Store), f"create: {r.status_code} {r.content!r}")
    store = r.parsed
    expect(r.headers.get("location") == f"/api/stores/{store.id}", f"Location: {r.headers.get('location')}")
    expect(store.status == StoreStatus.PROVISIONING, f"status: {store.status}")
    expect(store.name == name and store.engine == "woocommerce", "fields")
    print(f"e2e: created {store.name} ({store.id}), waiting until it is ready")

    deadline = time.monotonic() + args.ready_timeout
    while True:
        got = get_store.sync_detailed(client=client, id=store.id)
        expect(got.status_code == 200 and isinstance(got.parsed, Store), f"get: {got.status_code}")
        current = got.parsed
        if current.status == StoreStatus.READY:
            break
        expect(current.status != StoreStatus.FAILED, f"store failed: {current.error_message}")
        expect(time.monotonic() < deadline, f"not ready in time: {current.status} {current.progress}")
        time.sleep(1)
    expect(len(current.urls) > 0, "a ready store has URLs")
    print(f"e2e: ready at {[u.url for u in current.urls]}")

    listed = list_stores.sync(client=client)
    expect(any(s.id == store.id for s in listed.items), "the store is listed")

    events = list_store_events.sync(client=client, id=store.id)
    types = [str(e.type_.value if hasattr(e.type_, "value") else e.type_) for e in events.items]
    expect(types[0] == "created" and types[-1] == "store_ready", f"events: {types}")

    r = delete_store.sync_detailed(client=client, id=store.id)
    expect(r.status_code == 202 and r.parsed.status == StoreStatus.DELETING, f"delete: {r.status_code}")
    deadline = time.monotonic() + args.ready_timeout
    while True:
        got = get_store.sync_detailed(client=client, id=store.id)
        if got.status_code == 404:
            expect(isinstance(got.parsed, Problem), "404 is a problem")
            break
        expect(time.monotonic() < deadline, f"not gone in time: {got.status_code}")
        time.sleep(1)

    r = logout.sync_detailed(client=client)
    expect(r.status_code == 204, f"logout: {r.status_code}")
    r = get_me.sync_detailed(client=client)
    expect(r.status_code == 401, f"after logout: {r.status_code}")
    print("e2e: create -> get -> events -> delete passed through the generated Python client")


if __name__ == "__main__":
    main()
