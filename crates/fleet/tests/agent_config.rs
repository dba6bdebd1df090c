use certfleet_fleet::agent::AgentConfig;
use std::path::Path;

#[test]
fn scratch() {
    for text in [
        "state_dir = \"/var/lib/x\"\nbogus = 1\n",
        "[[install]]\ncertificate = \"www\"\nfullchian = \"/etc/a.pem\"\n",
        "[[install]]\nfullchain = \"/etc/a.pem\"\n",
        "[[install]]\ncertificate = \"www\"\n",
        "[[install]]\ncertificate = \"www\"\nkey = \"/etc/k\"\nmode = \"0644\"\n",
        "state_dir = [1\n",
    ] {
        match AgentConfig::parse(text, Path::new("/etc/certfleet/agent.toml")) {
            Ok(_) => println!("OK"),
            Err(e) => println!("{e}\n---"),
        }
    }
}
