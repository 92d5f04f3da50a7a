CREATE TABLE `audit_events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`at` text NOT NULL,
	`realm` text NOT NULL,
	`type` text NOT NULL,
	`user_id` text,
	`device_id` text,
	`ip` text,
	`detail` text
);
--> statement-breakpoint
CREATE INDEX `audit_realm_at` ON `audit_events` (`realm`,`at`);--> statement-breakpoint
CREATE INDEX `audit_user` ON `audit_events` (`user_id`);--> statement-breakpoint
CREATE TABLE `devices` (
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`realm` text NOT NULL,
	`session_id` text NOT NULL,
	`description` text,
	`push_token` text,
	`push_token_updated_at` text,
	`created_at` text NOT NULL,
	`last_seen_at` text NOT NULL,
	`expires_at` text NOT NULL,
	PRIMARY KEY(`user_id`, `device_id`),
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `devices_expires` ON `devices` (`expires_at`);--> statement-breakpoint
CREATE TABLE `domain_rules` (
	`realm` text NOT NULL,
	`domain` text NOT NULL,
	`rule` text NOT NULL,
	`created_at` text NOT NULL,
	PRIMARY KEY(`realm`, `domain`),
	FOREIGN KEY (`realm`) REFERENCES `realms`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `realms` (
	`id` text PRIMARY KEY NOT NULL,
	`registration` text DEFAULT 'open' NOT NULL,
	`approval_required` integer DEFAULT false NOT NULL,
	`captcha_required` integer DEFAULT false NOT NULL,
	`created_at` text NOT NULL,
	`updated_at` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `user_emails` (
	`user_id` text NOT NULL,
	`email` text NOT NULL,
	`added_at` text NOT NULL,
	PRIMARY KEY(`user_id`, `email`),
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `users` (
	`id` text PRIMARY KEY NOT NULL,
	`realm` text NOT NULL,
	`email` text,
	`phone_number` text,
	`password_hash` text,
	`full_name` text,
	`image_url` text,
	`roles` text DEFAULT '["user"]' NOT NULL,
	`status` text DEFAULT 'active' NOT NULL,
	`source` text NOT NULL,
	`profile` text DEFAULT '{}' NOT NULL,
	`created_at` text NOT NULL,
	`updated_at` text NOT NULL,
	FOREIGN KEY (`realm`) REFERENCES `realms`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `users_realm_email` ON `users` (`realm`,`email`);--> statement-breakpoint
CREATE UNIQUE INDEX `users_realm_phone` ON `users` (`realm`,`phone_number`);--> statement-breakpoint
CREATE INDEX `users_realm_created` ON `users` (`realm`,`created_at`,`id`);--> statement-breakpoint
CREATE TABLE `verification_codes` (
	`realm` text NOT NULL,
	`purpose` text NOT NULL,
	`subject` text NOT NULL,
	`code_hash` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`expires_at` text NOT NULL,
	`sent_at` text NOT NULL,
	`day` text NOT NULL,
	`day_count` integer DEFAULT 1 NOT NULL,
	PRIMARY KEY(`realm`, `purpose`, `subject`)
);
--> statement-breakpoint
CREATE INDEX `codes_expires` ON `verification_codes` (`expires_at`);--> statement-breakpoint
INSERT INTO `realms` (`id`, `registration`, `approval_required`, `captcha_required`, `created_at`, `updated_at`) VALUES ('default', 'open', 0, 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
