pub mod account;
pub mod certificates;
pub mod certonly;
pub mod revoke;
