import { OpenAPIHono } from "@hono/zod-openapi";
import { verifyOtp } from "../auth-methods/phone";
import { type AppEnv, clientIp } from "../context";
import { ApiError } from "../errors";
import { deps } from "../middleware/auth";
import { publicDevice } from "../middleware/device";
import { OtpRequestBody, OtpSentSchema, OtpTokenPairSchema, OtpVerifyBody } from "../schemas";
import { selfActor } from "../services/audit";
import { OTP_FAILURE_CODES, sendOtp } from "../services/otp";
import { json, jsonBody, optionalAuth, route } from "./define";

/** Phone-number login with one-time codes (docs/api.md §5). */
export const otp = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "post",
      path: "/v1/otp",
      limit: "RL_OTP",
      operationId: "sendOtp",
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      errors: ["captcha_failed", "captcha_unavailable", "delivery_failed", "delivery_unavailable", "realm_not_found"],
      tags: ["otp"],
      summary: "Send a login code by SMS",
      description:
        "With a Turnstile `captcha_token` when TURNSTILE_SECRET is set or the realm requires a captcha (400 captcha_failed; 503 captcha_unavailable). Sends a 6-digit code (valid 5 minutes, 5 tries) to the number, replacing any earlier code. At most one send per number every 60 s and 10 per UTC day (429 too_many_attempts with Retry-After). The answer is the same whether or not the number has an account. A failed delivery (502 delivery_failed) leaves no usable code behind and does not start the 60 s wait.",
      request: jsonBody(OtpRequestBody),
      responses: { 202: json("The code was sent", OtpSentSchema) },
    }),
    async (c) => {
      const { phone_number, captcha_token } = c.req.valid("json");
      const d = await deps(c);
      const realm = c.get("realm");
      const deviceId = c.get("tokenDevice");
      try {
        const sent = await sendOtp(d, realm, phone_number, { captchaToken: captcha_token, ip: clientIp(c) });
        d.audit({ type: "otp_sent", realm, deviceId, detail: { channel: "sms", phone_number } });
        return c.json(sent, 202);
      } catch (e) {
        if (e instanceof ApiError) {
          d.audit({ type: "otp_failed", realm, deviceId, detail: { stage: "send", reason: e.code, phone_number } });
        }
        throw e;
      }
    },
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/otp/verify",
      limit: "RL_OTP",
      operationId: "verifyOtp",
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      errors: [
        "invalid_otp",
        "otp_expired",
        "mfa_required",
        "account_disabled",
        "account_pending",
        "too_many_attempts",
        "realm_not_found",
      ],
      tags: ["otp"],
      summary: "Log in (or sign up) with a phone number and its code",
      description:
        "Optionally with a public token in Authorization: its device id is used. Creates the user on the first verify of a number (`created: true`; `pending` in realms that require approval, answered with 403 account_pending). A wrong code is 401 invalid_otp; an expired, used or unknown code, or one out of tries, is 401 otp_expired. `fcm_token` becomes the device's push token.",
      request: jsonBody(OtpVerifyBody),
      responses: { 200: json("Tokens for this device (the access token is fresh)", OtpTokenPairSchema) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const d = await deps(c);
      const realm = c.get("realm");
      const deviceId = c.get("deviceId");
      const result = await verifyOtp(d, realm, {
        phone: body.phone_number,
        otp: body.otp,
        name: body.name,
        fcmToken: body.fcm_token,
        description: body.description,
        deviceId,
      });
      const userId = result.user?.id ?? null;
      // A user is known only after a correct code: that code proved the number, so the user acted.
      const actor = userId ? selfActor(userId) : undefined;
      if (!result.ok) {
        // A signed-in first use records its sign-up with its login (completeLogin); a refused one here.
        if (result.created) d.audit({ type: "signup", realm, userId, deviceId, actor, detail: { source: "phone" } });
        d.audit({
          type: "otp_failed",
          realm,
          userId,
          deviceId,
          actor,
          detail: { stage: "verify", reason: result.reason, phone_number: body.phone_number },
        });
        throw new ApiError(OTP_FAILURE_CODES[result.reason]);
      }
      return c.json({ ...result.pair, created: result.created }, 200);
    },
  );
