ALTER TABLE `realms` ADD `email_verification` text DEFAULT 'optional' NOT NULL;--> statement-breakpoint
ALTER TABLE `user_emails` ADD `verified_at` text;--> statement-breakpoint
ALTER TABLE `users` ADD `pending_email` text;--> statement-breakpoint
-- Every existing address starts unverified (verified_at NULL above). Phone numbers: only an account
-- created by a phone code (source 'phone') is known to have proven its number; a number typed at
-- sign-up or set by an admin never was, and could be a stranger's. Those are detached, so a number
-- on an account is always a proven one and no OTP login can land in a squatted account; the
-- detachment is audited (the number itself is not written to the audit trail).
INSERT INTO `audit_events` (`at`, `realm`, `type`, `user_id`, `detail`)
  SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), `realm`, 'phone_detached', `id`, '{"reason":"unproven"}'
  FROM `users` WHERE `phone_number` IS NOT NULL AND `source` <> 'phone';
--> statement-breakpoint
UPDATE `users` SET `phone_number` = NULL WHERE `phone_number` IS NOT NULL AND `source` <> 'phone';
