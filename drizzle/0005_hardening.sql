CREATE TABLE `code_counters` (
	`realm` text NOT NULL,
	`purpose` text NOT NULL,
	`subject` text NOT NULL,
	`day` text NOT NULL,
	`sends` integer DEFAULT 0 NOT NULL,
	`failures` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`realm`, `purpose`, `subject`, `day`)
);
--> statement-breakpoint
CREATE INDEX `code_counters_day` ON `code_counters` (`day`);--> statement-breakpoint
CREATE TABLE `login_devices` (
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`last_login_at` text NOT NULL,
	PRIMARY KEY(`user_id`, `device_id`),
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `login_devices_last` ON `login_devices` (`last_login_at`);--> statement-breakpoint
ALTER TABLE `audit_events` ADD `actor_kind` text DEFAULT 'system' NOT NULL;--> statement-breakpoint
ALTER TABLE `audit_events` ADD `actor_id` text;--> statement-breakpoint
CREATE INDEX `audit_realm_type_at` ON `audit_events` (`realm`,`type`,`at`);--> statement-breakpoint
ALTER TABLE `users` ADD `sessions_valid_after` text;