CREATE TABLE `login_throttle` (
	`realm` text NOT NULL,
	`subject` text NOT NULL,
	`failures` integer DEFAULT 0 NOT NULL,
	`lockouts` integer DEFAULT 0 NOT NULL,
	`locked_until` text,
	`updated_at` text NOT NULL,
	PRIMARY KEY(`realm`, `subject`)
);
--> statement-breakpoint
CREATE INDEX `login_throttle_updated` ON `login_throttle` (`updated_at`);