"""A secured local broker's throwaway credentials: a CA and the broker's certificate made with the
JDK's ``keytool``, and SCRAM-SHA-512 passwords for the broker itself and for Velox's clients.

They live in ``<data>/kafka/secure/`` (files readable by their owner only). ``client.properties``
there is what ``VELOX_KAFKA_CONFIG`` names to reach the broker: the same file a managed Kafka
service's credentials would go in. Made once, when the broker's log directory is formatted (SCRAM
users are written into it then), and reused at every start.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from velox.errors import BrokerError

MECHANISM = "SCRAM-SHA-512"
LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
CLIENT_USER = "velox"
DAYS = 825  # the longest validity clients accept for a server certificate


@dataclass(frozen=True)
class BrokerSecrets:
    folder: Path

    @property
    def client_properties(self) -> Path:
        return self.folder / "client.properties"

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.folder / "broker.p12"

    def exists(self) -> bool:
        return (self.folder / "passwords.json").exists()

    def passwords(self) -> dict[str, str]:
        return json.loads((self.folder / "passwords.json").read_text())

    def make(self, host: str) -> None:
        """The CA, the broker's certificate for ``host`` (and localhost), the passwords, the client file."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        words = {"store": secrets.token_urlsafe(18), "admin": secrets.token_urlsafe(18),
                 CLIENT_USER: secrets.token_urlsafe(18)}
        store, ca_store = words["store"], self.folder / "ca.p12"
        san = ",".join(dict.fromkeys([_name(host), "ip:127.0.0.1", "dns:localhost"]))
        for args in (
            ["-genkeypair", "-alias", "ca", "-dname", "CN=velox local CA", "-ext", "bc:c", "-keystore", ca_store],
            ["-exportcert", "-rfc", "-alias", "ca", "-keystore", ca_store, "-file", self.ca],
            ["-genkeypair", "-alias", "broker", "-dname", f"CN={host}", "-keystore", self.keystore],
            ["-certreq", "-alias", "broker", "-keystore", self.keystore, "-file", self.folder / "broker.csr"],
            ["-gencert", "-rfc", "-alias", "ca", "-keystore", ca_store, "-infile", self.folder / "broker.csr",
             "-outfile", self.folder / "broker.crt", "-ext", f"SAN={san}"],
            ["-importcert", "-noprompt", "-alias", "ca", "-file", self.ca, "-keystore", self.keystore],
            ["-importcert", "-alias", "broker", "-file", self.folder / "broker.crt", "-keystore", self.keystore],
        ):
            _keytool(*args, "-storepass", store, "-keypass", store)
        (self.folder / "passwords.json").write_text(json.dumps(words))
        self.client_properties.write_text(
            f"security.protocol=SASL_SSL\nsasl.mechanism={MECHANISM}\nsasl.username={CLIENT_USER}\n"
            f"sasl.password={words[CLIENT_USER]}\nssl.ca.location={self.ca}\n")
        for path in self.folder.iterdir():
            path.chmod(0o600)

    def broker_config(self) -> dict[str, str]:
        """What server.properties adds for a SASL_SSL listener named SASL_SSL, also used between
        brokers, and for the KRaft controllers' listener: TLS both ways, each node showing the
        certificate the CA signed (SCRAM cannot serve there: its users live in the metadata that
        the controllers serve)."""
        words = self.passwords()
        return {
            "listener.name.controller.ssl.client.auth": "required",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config":
                f'{LOGIN} required username="admin" password="{words["admin"]}";',
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": words["store"],
            "ssl.key.password": words["store"],
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca),
        }

    def format_arguments(self) -> list[str]:
        """The StorageTool arguments that create the SCRAM users in a new log directory."""
        words = self.passwords()
        return [argument for user in ("admin", CLIENT_USER)
                for argument in ("--add-scram", f"{MECHANISM}=[name={user},password={words[user]}]")]


def _name(host: str) -> str:
    """``host`` as a subjectAltName entry."""
    return f"ip:{host}" if host.replace(".", "").isdigit() else f"dns:{host}"


def _keytool(*args: object) -> None:
    common = ["-keyalg", "RSA", "-keysize", "2048", "-validity", str(DAYS), "-storetype", "PKCS12"]
    command = ["keytool", *map(str, args)]
    if args[0] in ("-genkeypair", "-gencert"):
        command += common if args[0] == "-genkeypair" else ["-validity", str(DAYS)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"keytool {args[0]} failed: {(result.stdout + result.stderr).strip()[-500:]}")
