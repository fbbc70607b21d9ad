/**
 * Deny by default: every route declares who may call it, `{ auth: ["driver", "operations"] }` (roles; the handler
 * receives the verified `principal`) or `{ open: true }` (health, readiness). createApp refuses to build an app
 * with a route that declares neither (assertEveryRouteHasARule), and a test enumerates app.routes to the same end.
 * Whether the principal may touch *this* order or driver is decided next to the data (order-access.ts).
 */
import { Elysia } from "elysia";
import { AppError } from "../../lib/errors.ts";
import type { Principal, Role } from "./principal.ts";
import type { TokenService } from "./tokens.ts";

/** Roles, or roles plus the token accepted as `?token=` (EventSource and shared links cannot set headers). */
export type AuthRule = readonly Role[] | { roles: readonly Role[]; tokenInQuery: true };

/** Marks the hook a rule installed, so a route's rule can be read back from app.routes. */
const RULE = Symbol.for("driver-tracking.auth-rule");
export const OPEN = "open" as const;

/** Routes added by plugins rather than modules, open by design: the OpenAPI document and its UI. */
const PLUGIN_OPEN_PATHS = new Set(["/openapi", "/openapi/json"]);

function bearerToken(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) throw new AppError("UNAUTHENTICATED", "the Authorization header is not `Bearer <token>`");
  return match[1];
}

const tagged = <F extends object>(fn: F, rule: AuthRule | typeof OPEN): F => Object.assign(fn, { [RULE]: rule });

/** What a 401 without a token carries, as RFC 6750 asks. */
export const WWW_AUTHENTICATE = 'Bearer realm="driver-tracking"';

/**
 * The token a request carries for `rule`: the Authorization header first, then `?token=` where the rule takes it.
 * Undefined without one (the caller answers 401 with WWW-Authenticate); a malformed Authorization header is a 401.
 */
export function tokenFor(rule: AuthRule, request: { authorization: string | undefined; queryToken: unknown }) {
  const tokenInQuery = "tokenInQuery" in rule && rule.tokenInQuery;
  const fromQuery = tokenInQuery && typeof request.queryToken === "string" ? request.queryToken : undefined;
  return bearerToken(request.authorization) ?? fromQuery;
}

/**
 * The caller behind `token`, if `rule` admits it: 401 UNAUTHENTICATED without a valid token, 403 FORBIDDEN for a role
 * outside the rule. Shared by every route of the app and by the live socket server (api/modules/tracking/live-socket.ts).
 */
export async function principalFor(
  tokens: TokenService,
  rule: AuthRule,
  token: string | undefined,
  options: { remember?: boolean } = {},
): Promise<Principal> {
  if (!token) throw new AppError("UNAUTHENTICATED", "a bearer token is required");
  const principal = await tokens.verify(token, options);
  const roles: readonly Role[] = "roles" in rule ? rule.roles : rule;
  if (!roles.includes(principal.role)) {
    throw new AppError("FORBIDDEN", `the ${principal.role} role may not use this route`);
  }
  return principal;
}

export function authPlugin(tokens: TokenService) {
  return new Elysia({ name: "auth" }).macro({
    /** Only callers with a valid token of one of these roles; 401 without one, 403 for another role. */
    auth(rule: AuthRule) {
      const resolve = async ({
        headers,
        query,
        set,
      }: {
        headers: Record<string, string | undefined>;
        query: Record<string, unknown>;
        set: { headers: Record<string, unknown> };
      }): Promise<{ principal: Principal }> => {
        const token = tokenFor(rule, { authorization: headers.authorization, queryToken: query.token });
        if (!token) set.headers["www-authenticate"] = WWW_AUTHENTICATE;
        return { principal: await principalFor(tokens, rule, token) };
      };
      return { resolve: tagged(resolve, rule), detail: { security: [{ bearer: [] }] } };
    },

    /** Anyone, without a token: only liveness, readiness and the API's description. */
    open(_: true) {
      return { beforeHandle: tagged(() => {}, OPEN), detail: { security: [] } };
    },
  });
}

export type AuthPlugin = ReturnType<typeof authPlugin>;

/** Lower-case comparison: paths may spell a UUID in capitals, tokens carry it in lower case. */
export const sameId = (pathId: string, sub: string) => pathId.toLowerCase() === sub;

/** 403 unless the caller is `id` itself (its own driver record, its own customer id) or operations. */
export function requireSelf(principal: Principal, id: string, what: string, options: { operations: boolean }) {
  if (options.operations && principal.role === "operations") return;
  if (!sameId(id, principal.sub)) throw new AppError("FORBIDDEN", `a ${principal.role} may act only on its own ${what}`);
}

interface RouteLike {
  method: string;
  path: string;
  hooks?: { beforeHandle?: unknown };
}

/** The rule a route declared (roles, or "open"), or undefined when it declared none. */
export function ruleOf(route: RouteLike): AuthRule | typeof OPEN | undefined {
  if (PLUGIN_OPEN_PATHS.has(route.path)) return OPEN;
  const hooks = route.hooks?.beforeHandle;
  const list = Array.isArray(hooks) ? hooks : hooks === undefined ? [] : [hooks];
  for (const hook of list) {
    const fn = typeof hook === "function" ? hook : (hook as { fn?: unknown })?.fn;
    const rule = (fn as { [RULE]?: AuthRule | typeof OPEN } | undefined)?.[RULE];
    if (rule !== undefined) return rule;
  }
  return undefined;
}

/** Refuses to serve an app in which some route has no rule: a forgotten guard fails at start-up, not in production. */
export function assertEveryRouteHasARule(routes: readonly RouteLike[]): void {
  const missing = routes.filter((route) => ruleOf(route) === undefined).map((r) => `${r.method} ${r.path}`);
  if (missing.length > 0) {
    throw new AppError("CONFIG_INVALID", `routes without an auth rule (deny by default): ${missing.join(", ")}`);
  }
}
