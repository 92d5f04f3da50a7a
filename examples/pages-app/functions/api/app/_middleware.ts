// Guards /api/app/*: only a verified session (env.AUTH.verify over the binding) gets through.
// An expired access token is refreshed once; a session that is over clears the cookies and
// answers 401, on which the pages send the user to the login page.
import { type AppData, type Env, errorResponse, withCookies } from "../../../lib/auth";
import { authenticate } from "../../../lib/session";

export const onRequest: PagesFunction<Env, string, AppData> = async (context) => {
  const session = await authenticate(context.env, context.request);
  if (!session.ok) return errorResponse(session.status, session.code, session.message, session.setCookies);
  context.data.claims = session.claims;
  return withCookies(await context.next(), session.setCookies);
};
