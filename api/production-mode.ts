/**
 * Imported first by api/server.ts, before anything loads Elysia: Elysia reads NODE_ENV once, when its error module
 * is evaluated (`isProduction` in elysia/dist/error.mjs), and outside production a validation error pretty-prints
 * the whole body with every schema error in its message (a 31 KB body nested 16k deep cost 2.4 s and 300 MB).
 * Setting NODE_ENV in server.ts's body would come too late: imports are evaluated before it.
 */
if (process.env.NODE_ENV !== "production") {
  if (process.env.NODE_ENV) console.warn(`[api] NODE_ENV=${process.env.NODE_ENV} replaced by production`);
  process.env.NODE_ENV = "production";
}
