pub mod account;
pub mod certificates;
pub mod certonly;
pub mod daemon;
pub mod reconfigure;
pub mod renew;
pub mod revoke;
pub mod timer;
