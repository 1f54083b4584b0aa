// Sign-in: email and password for a bearer token (`login`).
import { useState, type FormEvent } from "react";
import { api, unwrap } from "../api/client";
import { ApiProblem, describe } from "../api/problem";
import * as session from "../api/session";
import { FieldShell } from "../components/FieldShell";
import { ErrorNotice, InfoNotice } from "../components/Notice";
import { Page } from "../components/Page";

/** Signing in changes the session; the app then moves on to where the person was going. */
export function SignIn({ reason }: { reason: session.EndReason }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setFieldErrors({});
    try {
      const s = await unwrap(api.POST("/api/auth/login", { body: { email: email.trim(), password } }));
      session.signedIn(s);
    } catch (err) {
      if (err instanceof ApiProblem && err.errors.length) {
        setFieldErrors(Object.fromEntries(err.errors.map((f) => [f.field, f.message])));
      }
      setError(err instanceof ApiProblem && err.status === 401 ? "Wrong email or password." : describe(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="signin">
      <Page title="Sign in" heading="Sign in to Storeplane">
        {reason === "expired" ? <InfoNotice>Your session has ended. Sign in again to continue.</InfoNotice> : null}
        {reason === "signed-out" ? <InfoNotice>You are signed out.</InfoNotice> : null}
        {error ? <ErrorNotice title="Could not sign in">{error}</ErrorNotice> : null}
        <form className="form" onSubmit={(e) => void submit(e)} noValidate aria-busy={busy}>
          <FieldShell id="email" label="Email" error={fieldErrors.email}>
            <input
              type="email"
              name="email"
              autoComplete="username"
              value={email}
              onChange={(e) => setEmail(e.target.value)}
              required
            />
          </FieldShell>
          <FieldShell id="password" label="Password" error={fieldErrors.password}>
            <input
              type="password"
              name="password"
              autoComplete="current-password"
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              required
            />
          </FieldShell>
          <div className="actions">
            <button type="submit" className="button button-primary" disabled={busy}>
              {busy ? "Signing in…" : "Sign in"}
            </button>
          </div>
        </form>
        <p className="muted">
          Accounts are created by an operator with <code>storeplane user create</code>.
        </p>
      </Page>
    </div>
  );
}
