CREATE TABLE `authority_tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`realm` text NOT NULL,
	`domain` text NOT NULL,
	`token_hash` text NOT NULL,
	`created_by` text,
	`created_at` text NOT NULL,
	`expires_at` text NOT NULL,
	`revoked_at` text,
	FOREIGN KEY (`realm`) REFERENCES `realms`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `authority_realm_domain` ON `authority_tokens` (`realm`,`domain`);--> statement-breakpoint
CREATE INDEX `authority_expires` ON `authority_tokens` (`expires_at`);