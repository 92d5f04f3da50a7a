import { ApiError } from "../errors";
import type { Db } from "../storage/db";
import { deleteRule, listRuleRows, rulesAmong, upsertRule } from "../storage/domains";
import type { RealmRow } from "../storage/schema";
import { iso } from "../time";
import type { Deps } from "./deps";

/** The domain and each parent that a rule may cover: mail.example.com → [mail.example.com, example.com, com]. */
export function domainAndParents(domain: string): string[] {
  const labels = domain.split(".");
  return labels.map((_, i) => labels.slice(i).join("."));
}

/** The most specific rule covering `domain` among `rules`, or null. */
export function effectiveRule(domain: string, rules: Map<string, "allow" | "block">): "allow" | "block" | null {
  for (const candidate of domainAndParents(domain)) {
    const rule = rules.get(candidate);
    if (rule) return rule;
  }
  return null;
}

/** Pure decision of docs/api.md §6: may this email domain register in a realm with this mode? */
export function registrationDecision(
  mode: RealmRow["registration"],
  rule: "allow" | "block" | null,
  opts: { byAdmin?: boolean } = {},
): "ok" | "registration_closed" | "domain_not_allowed" {
  if (mode === "closed" && !opts.byAdmin) return "registration_closed";
  if (rule === "block") return "domain_not_allowed";
  if (mode === "allowlist" && rule !== "allow" && !opts.byAdmin) return "domain_not_allowed";
  return "ok";
}

/** Loads the rules that could cover an email's domain. */
async function rulesFor(db: Db, realm: string, email: string): Promise<Map<string, "allow" | "block">> {
  const domain = email.slice(email.lastIndexOf("@") + 1);
  return rulesAmong(db, realm, domainAndParents(domain));
}

/** Throws when the realm's mode or domain rules refuse this email. */
export async function assertEmailAllowed(
  db: Db,
  realm: RealmRow,
  email: string,
  opts: { byAdmin?: boolean; ignoreMode?: boolean } = {},
): Promise<void> {
  const rules = await rulesFor(db, realm.id, email);
  const domain = email.slice(email.lastIndexOf("@") + 1);
  const mode = opts.ignoreMode ? "open" : realm.registration;
  const decision = registrationDecision(mode, effectiveRule(domain, rules), opts);
  if (decision !== "ok") throw new ApiError(decision);
}

/** A realm's domain rules, by domain (docs/api.md §6). */
export async function listDomainRules(deps: Deps, realm: string) {
  const rows = await listRuleRows(deps.db, realm);
  return rows.map((r) => ({ domain: r.domain, rule: r.rule, created_at: r.createdAt }));
}

/** Allows or blocks a domain; changing a rule never touches existing users. */
export async function setDomainRule(deps: Deps, realm: string, domain: string, rule: "allow" | "block") {
  const row = await upsertRule(deps.db, { realm, domain, rule, createdAt: iso(deps.now) });
  return { domain: row.domain, rule: row.rule, created_at: row.createdAt };
}

/** Removes a domain's rule: 404 not_found when it had none. */
export async function removeDomainRule(deps: Deps, realm: string, domain: string): Promise<void> {
  if (!(await deleteRule(deps.db, realm, domain))) throw new ApiError("not_found", "No rule for this domain");
}
