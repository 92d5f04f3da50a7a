import { z } from "zod";

/**
 * Identity provider settings (docs/api.md §13): `OIDC_PROVIDERS`, `OIDC_CLIENT_SECRETS`,
 * `OAUTH_REDIRECT_URIS`. Problems name the setting and the provider, never a secret's value.
 */
export interface OidcProvider {
  id: string;
  issuer: string;
  /** The accepted `aud` values; the first is the client id of the web (code) flow. */
  client_ids: string[];
  authorization_endpoint?: string;
  token_endpoint?: string;
  jwks_uri?: string;
}

/** Providers whose issuer and endpoints are known: `{id, client_ids}` is enough. */
export const PRESETS: Record<string, Omit<OidcProvider, "id" | "client_ids">> = {
  google: {
    issuer: "https://accounts.google.com",
    authorization_endpoint: "https://accounts.google.com/o/oauth2/v2/auth",
    token_endpoint: "https://oauth2.googleapis.com/token",
    jwks_uri: "https://www.googleapis.com/oauth2/v3/certs",
  },
  apple: {
    issuer: "https://appleid.apple.com",
    authorization_endpoint: "https://appleid.apple.com/auth/authorize",
    token_endpoint: "https://appleid.apple.com/auth/token",
    jwks_uri: "https://appleid.apple.com/auth/keys",
  },
};

const httpUrl = z
  .string()
  .refine((v) => URL.canParse(v) && /^https?:$/.test(new URL(v).protocol), "must be an http(s) URL");

const providerSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, "must match ^[a-z0-9][a-z0-9_-]{0,31}$"),
  issuer: httpUrl.optional(),
  client_ids: z.array(z.string().min(1).max(256)).min(1, "must list at least one client id").max(20),
  authorization_endpoint: httpUrl.optional(),
  token_endpoint: httpUrl.optional(),
  jwks_uri: httpUrl.optional(),
});

function parseJson(raw: string, ctx: z.RefinementCtx): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    ctx.addIssue({ code: "custom", message: "is not valid JSON" });
    return z.NEVER;
  }
}

const blank = (v: string | undefined) => v === undefined || v.trim() === "";

export const oidcProviders = z
  .string()
  .optional()
  .transform((raw, ctx): OidcProvider[] => {
    if (blank(raw)) return [];
    const parsed = parseJson(raw as string, ctx);
    if (!Array.isArray(parsed)) {
      ctx.addIssue({ code: "custom", message: "must be a JSON array of {id, issuer, client_ids, ...}" });
      return z.NEVER;
    }
    const out: OidcProvider[] = [];
    parsed.forEach((entry, i) => {
      const p = providerSchema.safeParse(entry);
      const name = typeof entry?.id === "string" ? `"${String(entry.id).slice(0, 32)}"` : `#${i}`;
      if (!p.success) {
        for (const issue of p.error.issues) {
          ctx.addIssue({
            code: "custom",
            message: `provider ${name}: ${issue.path.join(".") || "entry"} ${issue.message}`,
          });
        }
        return;
      }
      const preset = PRESETS[p.data.id];
      const issuer = p.data.issuer ?? preset?.issuer;
      if (!issuer) {
        ctx.addIssue({
          code: "custom",
          message: `provider ${name}: issuer is required (only google and apple have presets)`,
        });
        return;
      }
      if (out.some((o) => o.id === p.data.id)) {
        ctx.addIssue({ code: "custom", message: `provider ${name} is listed twice` });
        return;
      }
      // A preset fills only the endpoints of its own issuer.
      const fill = preset && preset.issuer === issuer ? preset : {};
      out.push({ ...fill, ...p.data, issuer });
    });
    return out;
  });

export const oidcClientSecrets = z
  .string()
  .optional()
  .transform((raw, ctx): Record<string, string> => {
    if (blank(raw)) return {};
    const parsed = parseJson(raw as string, ctx);
    const ok = z.record(z.string(), z.string().min(1)).safeParse(parsed);
    if (!ok.success) {
      // Never echo the value: it holds secrets.
      ctx.addIssue({ code: "custom", message: "must be a JSON object of provider id → client secret" });
      return z.NEVER;
    }
    return ok.data;
  });

export const oauthRedirectUris = z
  .string()
  .optional()
  .transform((raw, ctx): string[] => {
    const list = (raw ?? "").split(/[\s,]+/).filter(Boolean);
    for (const uri of list) {
      if (!URL.canParse(uri) || new URL(uri).hash) {
        ctx.addIssue({ code: "custom", message: `"${uri.slice(0, 100)}" is not an absolute URI without a fragment` });
      }
    }
    return list;
  });

/** Cross-checks after parsing: every secret names a configured provider. */
export function oidcProblems(providers: OidcProvider[], secrets: Record<string, string>): string[] {
  return Object.keys(secrets)
    .filter((id) => !providers.some((p) => p.id === id))
    .map((id) => `OIDC_CLIENT_SECRETS: "${id.slice(0, 32)}" is not a provider of OIDC_PROVIDERS`);
}
