"""``make run``: the whole passport flow through the real ``pasaporte`` command line, in a
temporary home, printing each step — two city offices, a resident's wallet, a counter, the
public ledger. Every step is a real subprocess; nothing is simulated.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

MARIA = {
    "given_name": "María Guadalupe", "family_name": "Hernández López",
    "birth_date": "1987-03-14",
    "residence": {"city": "Mexicali", "country": "MX", "since": "2015-06-01"},
    "library": {"eligible": True, "system": "Bibliotecas Públicas de Mexicali"},
    "transit": {"fare_category": "senior"},
    "clinic": {"eligible": True, "network": "Red Binacional de Salud Comunitaria"},
    "preferred_language": "es",
}
JAMES = {
    "given_name": "James Robert", "family_name": "O'Connor-Ramírez",
    "birth_date": "2004-09-30",
    "residence": {"city": "Calexico", "country": "US", "since": "2019-01-15"},
    "library": {"eligible": True, "system": "Calexico Public Library"},
    "transit": {"fare_category": "student"}, "clinic": {"eligible": False},
    "preferred_language": "en",
}


def valid_for(years: int, today: datetime.date | None = None) -> dict[str, str]:
    """A validity window that holds the day the demo runs, whatever the year: from yesterday
    (in UTC, so that no time zone sees it start tomorrow) for ``years`` years. Dates written
    into the demo would make ``make run`` fail once they passed."""
    start = (today or datetime.datetime.now(datetime.UTC).date()) - datetime.timedelta(1)
    try:
        end = start.replace(year=start.year + years)
    except ValueError:  # from 29 February to a year without one
        end = start.replace(year=start.year + years, day=28)
    return {"valid_from": start.isoformat(), "valid_until": end.isoformat()}



class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "PASAPORTE_PASSPHRASE": "demo passphrase / frase de demo",
                    "PYTHONUNBUFFERED": "1"}
        self.env.pop("PASAPORTE_HOME", None)
        self.step_no = 0
        self.servers: list[subprocess.Popen[str]] = []

    def step(self, es: str, en: str) -> None:
        self.step_no += 1
        print(f"\n\033[1m{self.step_no}. {es} / {en}\033[0m", flush=True)

    def run(self, *args: str, expect: int = 0, show: bool = True,
            stdin: str | None = None) -> str:
        cmd = [sys.executable, "-m", "pasaporte", *args]
        shown = " ".join(shlex.quote(a if len(a) < 70 else a[:60] + "…") for a in args)
        fed = "" if stdin is None else f"   < {len(stdin.splitlines())} línea(s) / line(s)"
        print(f"  $ pasaporte {shown}{fed}", flush=True)
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120,
                              input=stdin)
        if show:
            for line in (proc.stdout + proc.stderr).strip().splitlines()[:14]:
                print(f"    {line[:150]}")
        if proc.returncode != expect:
            print(f"  ✘ exit {proc.returncode}, expected {expect}", file=sys.stderr)
            sys.exit(1)
        return proc.stdout

    def home(self, name: str) -> str:
        return str(self.root / name)

    def serve(self, home: str) -> str:
        """Start ``pasaporte ledger serve`` in the background; returns its URL."""
        print(f"  $ pasaporte ledger serve --home {home} --port 0 &", flush=True)
        proc = subprocess.Popen([sys.executable, "-m", "pasaporte", "ledger", "serve",
                                 "--home", home, "--port", "0"], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        print(f"    {line}")
        if not line.startswith("escuchando en / listening on "):
            sys.exit("ledger node did not start")
        self.servers.append(proc)
        return line.split()[-1]

    def stop(self) -> None:
        while self.servers:
            proc = self.servers.pop()
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()  # also when a step fails (sys.exit): no ledger server left running


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pasaporte-demo-") as tmp, Demo(Path(tmp)) as d:
        files = Path(tmp) / "files"
        files.mkdir()
        (files / "maria.json").write_text(json.dumps({**MARIA, **valid_for(3)},
                                                     ensure_ascii=False))
        (files / "james.json").write_text(json.dumps({**JAMES, **valid_for(1)},
                                                     ensure_ascii=False))
        print(f"Pasaporte urbano binacional — demostración / demo, en/in {tmp}")

        d.step("Cada ciudad arranca su nodo del registro público (SQLite, localhost)",
               "Each city starts its public ledger node (SQLite, localhost)")
        log_key = d.run("ledger", "init", "--origin", "ledger.mexicali.example/log",
                        "--home", d.home("ledger")).strip().splitlines()[-1]
        d.run("ledger", "init", "--origin", "ledger.calexico.example/log",
              "--home", d.home("ledger-calexico"))
        node = d.serve(d.home("ledger"))
        witness_node = d.serve(d.home("ledger-calexico"))

        d.step("Calexico atestigua el registro de Mexicali: nadie puede mostrar dos historias",
               "Calexico witnesses Mexicali's log: no one can show two histories")
        witness_key = d.run("ledger", "key", "--witness", "--home", d.home("ledger-calexico"),
                            show=False).strip().splitlines()[-1]
        d.run("ledger", "witness", "--log", node, "--log-key", log_key,
              "--home", d.home("ledger-calexico"))
        d.run("ledger", "witnesses", "add", "--url", witness_node, "--key", witness_key,
              "--home", d.home("ledger"))

        d.step("Dos oficinas crean sus llaves", "Two city offices create their keys")
        d.run("issuer", "init", "--city", "Mexicali", "--country", "MX",
              "--office", "Oficina Municipal Centro", "--timezone", "America/Tijuana",
              "--home", d.home("mexicali"))
        # its append token, bound to it by its root file: it writes only what is Mexicali's
        d.run("issuer", "root", "--out", str(files / "root-mexicali.json"),
              "--home", d.home("mexicali"))
        token = d.run("ledger", "token", "add", "oficina-centro", "--root",
                      str(files / "root-mexicali.json"), "--home", d.home("ledger"),
                      show=False).strip().splitlines()[-1]
        d.run("issuer", "ledger", "--url", node, "--token", token, "--home", d.home("mexicali"))
        d.run("issuer", "init", "--city", "Calexico", "--country", "US",
              "--office", "City Hall Resident Services", "--timezone", "America/Los_Angeles",
              "--home", d.home("calexico"))
        d.run("issuer", "keys", "--home", d.home("mexicali"))

        d.step("La ventanilla configura las raíces de ambas ciudades",
               "The counter is configured with both cities' root keys")
        for city in ("mexicali", "calexico"):
            d.run("issuer", "root", "--out", str(files / f"root-{city}.json"),
                  "--home", d.home(city))

        d.step("María crea su cartera", "María creates her wallet")
        d.run("wallet", "init", "--home", d.home("wallet"))
        holder = d.run("wallet", "key", "--home", d.home("wallet")).strip()

        d.step("Mexicali emite el pasaporte de María", "Mexicali issues María's passport")
        cred_id = d.run("issuer", "issue", "--claims", str(files / "maria.json"),
                        "--holder-key", holder, "--out", str(files / "maria.cred"),
                        "--home", d.home("mexicali")).strip()
        d.run("wallet", "import", str(files / "maria.cred"), "--home", d.home("wallet"))
        d.run("wallet", "list", "--home", d.home("wallet"))

        d.step("Calexico imprime un pasaporte en papel para James",
               "Calexico prints a paper passport for James")
        d.run("issuer", "issue", "--claims", str(files / "james.json"), "--paper",
              "--out", str(files / "james.paper"), "--qr", str(files / "james.png"),
              "--home", d.home("calexico"))

        d.step("Cada ciudad publica su paquete de confianza", "Each city publishes its bundle")
        for city in ("mexicali", "calexico"):
            d.run("issuer", "bundle", "--out", str(files / f"bundle-{city}.cbor"),
                  "--home", d.home(city))
        trust = ["--bundle", str(files / "bundle-mexicali.cbor"),
                 "--bundle", str(files / "bundle-calexico.cbor"),
                 "--trust-root", str(files / "root-mexicali.json"),
                 "--trust-root", str(files / "root-calexico.json")]
        d.run("wallet", "trust", *trust, "--home", d.home("wallet"))
        d.run("wallet", "list", "--json", "--home", d.home("wallet"))

        d.step("María muestra su código en la biblioteca (solo residencia y biblioteca)",
               "María shows her code at the library (residence and library only)")
        text = d.run("wallet", "present", cred_id, "--for", "library",
                     "--qr", str(files / "maria-library.png"), "--home", d.home("wallet"),
                     show=False).strip()
        print(f"    {len(text)} caracteres / characters: {text[:60]}…")
        d.run("verify", "--service", "library", *trust, "--text", text)

        d.step("La ventanilla lee la foto del código QR", "The counter reads a photo of the QR")
        d.run("verify", "--service", "library", *trust, "--image",
              str(files / "maria-library.png"))

        d.step("El mismo código en la clínica: rechazado (era para la biblioteca)",
               "The same code at the clinic: refused (it was made for the library)")
        d.run("verify", "--service", "clinic", *trust, "--text", text, expect=1)

        d.step("La ventanilla en servicio: el lector escribe cada código, uno por línea",
               "The counter at work: the scanner types each code, one per line")
        d.run("verify", "--service", "library", *trust, "--scan",
              stdin=f"{text}\nNOT A PASSPORT\n")

        d.step("Pasaporte en papel de James en la biblioteca de Mexicali",
               "James's paper passport at a Mexicali library")
        d.run("verify", "--service", "library", *trust, "--image", str(files / "james.png"))

        d.step("Mexicali revoca el pasaporte y publica un paquete nuevo",
               "Mexicali revokes the passport and publishes a new bundle")
        d.run("issuer", "revoke", cred_id, "--reason", "holder_request",
              "--home", d.home("mexicali"))
        d.run("issuer", "bundle", "--out", str(files / "bundle-mexicali.cbor"),
              "--home", d.home("mexicali"))
        text = d.run("wallet", "present", cred_id, "--for", "library",
                     "--home", d.home("wallet"), show=False).strip()
        d.run("verify", "--service", "library", *trust, "--text", text, expect=1)

        d.step("Cualquiera audita el registro: sin nombres, solo compromisos",
               "Anyone audits the ledger: no names, only commitments")
        print(f"    {node}/checkpoint:")
        for line in _get(node + "/checkpoint").splitlines():
            print(f"      {line}")
        d.run("ledger", "audit", "--home", d.home("ledger"))
        d.run("ledger", "mirror", "--from", node, "--log-key", log_key,
              "--witness-key", witness_key, "--home", d.home("mirror"))
        d.step("Ninguna llave colada: el paquete coincide con el registro público",
               "No key slipped in: the bundle matches the public record")
        d.run("ledger", "check-bundle", "--bundle", str(files / "bundle-mexicali.cbor"),
              "--trust-root", str(files / "root-mexicali.json"), "--home", d.home("mirror"))
        d.step("La ventanilla solo confía en paquetes publicados: la prueba viaja con el paquete",
               "The counter trusts only published bundles: the proof travels with the bundle")
        d.run("ledger", "prove-bundle", "--bundle", str(files / "bundle-mexicali.cbor"),
              "--out", str(files / "bundle-mexicali.proof"), "--home", d.home("mirror"))
        logged = ["--bundle", str(files / "bundle-mexicali.cbor"),
                  "--trust-root", str(files / "root-mexicali.json"),
                  "--log-key", log_key, "--witness-key", witness_key]
        d.run("verify", "--service", "library", *logged, "--text", text, expect=2)  # no proof
        d.run("verify", "--service", "library", *logged,  # proven: the passport itself is read
              "--bundle-proof", str(files / "bundle-mexicali.proof"), "--text", text, expect=1)
        d.stop()
        print("\n✔ Demostración completa / Demo complete")
    return 0


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


if __name__ == "__main__":
    sys.exit(main())
