//! Man pages with no clap definition behind them, as roff text:
//! mount.fuse.dekfs(8) (mount(8)'s convention, not dekfs's CLI) and
//! dekfs-format(5), which points to docs/FORMAT.md rather than copying it.
//! The option lists must follow docs/CLI-ABI.md, the contract.

/// (section, name, roff text)
pub const STATIC: [(u8, &str, &str); 2] = [
    (8, "mount.fuse.dekfs", MOUNT_HELPER),
    (5, "dekfs-format", FORMAT),
];

const MOUNT_HELPER: &str = r#".TH MOUNT.FUSE.DEKFS 8 "" "dekfs" "System Administration"
.SH NAME
mount.fuse.dekfs \- mount a dekfs volume from mount(8) or /etc/fstab
.SH SYNOPSIS
.B mount \-t fuse.dekfs
.I CIPHERDIR MOUNTPOINT
.RB [ \-o
.IR OPTIONS ]
.br
.B mount.fuse.dekfs
.I CIPHERDIR MOUNTPOINT
.RB [ \-o
.IR OPTIONS ]
.RB [ \-n ]
.RB [ \-s ]
.RB [ \-f ]
.RB [ \-v ]
.SH DESCRIPTION
mount(8) runs this helper for filesystems of type
.BR fuse.dekfs .
It checks the options with the grammar of
.BR "dekfs mount" ,
then runs
.B dekfs mount
.I CIPHERDIR MOUNTPOINT
.B \-o
.IR OPTIONS ,
which returns only when the mount is live or has failed, so mount(8) and
systemd mount units see success or a real failure.
A passphrase never travels in options, arguments or the environment.
.SH OPTIONS
.TP
.BI \-o " OPTIONS"
Comma-separated mount options, below. May be given more than once.
.TP
.B \-f
Check the arguments and options; mount nothing.
.TP
.BR \-n ", " \-s ", " \-v
Accepted and ignored. \-s does not make unknown dekfs options acceptable.
.TP
.BR \-r ", " \-w
The same as \-o ro and \-o rw.
.SH MOUNT OPTIONS
.TP
.BI passfile= FILE
Read the passphrase from the first line of FILE (with keysource=recovery: the recovery key).
.TP
.B keysource=tpm
Unlock with the volume's tpm2 protector, no prompt. When the TPM refuses,
ask for the passphrase (terminal, else systemd\-ask\-password), unless
.B nofail
or
.B headless
is given: then fail at once, so boot never waits for a person.
systemd removes nofail from the options before it runs mount(8), so in
fstab lines and mount units write headless as well.
.TP
.B keysource=kmip
Unlock with the volume's kmip protector, no prompt: the KMIP key manager
named in the protector decrypts the KEK. When it refuses (unreachable,
TLS failure, key revoked or destroyed, permission denied), ask for the
passphrase, unless
.B nofail
or
.B headless
is given: then fail at once (exit 17).
.TP
.B keysource=passphrase
The passphrase from passfile= or the terminal; never the TPM.
.TP
.B keysource=ask
The terminal if there is one, else systemd\-ask\-password (agents: console,
plymouth, systemd\-tty\-ask\-password\-agent), 90 s at most.
.TP
.B keysource=recovery
The recovery key from the file passfile= names, else asked for.
.TP
(none)
The TPM first, then a KMIP key manager, then passfile= or the terminal.
.TP
.B headless
Never ask a person: a TPM refusal fails the mount at once. Unlike nofail,
it reaches the helper when systemd mounts.
.TP
.BI tcti= TCTI ", tpm_tcti=" TCTI
The TPM to use, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321.
.TP
.BI idle= DURATION
Unmount after DURATION (90, 90s, 15min, 2h, 1d) with no request and no file
or directory open; a busy mount (a working directory inside) stays and is
tried again after another DURATION. With x\-systemd.automount the next
access mounts it again.
.TP
.BR allow_other ", " allow_root ", " default_permissions ", " ro ", " rw ", " suid ", " dev ", " noxattr ", " writeback_cache
As for
.BR "dekfs mount \-o" .
.TP
Generic options
nosuid, nodev, exec, noexec, atime, noatime, diratime, nodiratime, relatime,
sync, async, dirsync, max_read=N, blksize=N reach the kernel; defaults, auto,
noauto, nofail, _netdev, user, users, nouser, owner, group, comment=, x\-*
are accepted and left to mount(8) and systemd.
.PP
Any other option is an error naming it (exit status 2).
.SH EXAMPLES
.nf
/srv/vault.enc  /srv/vault  fuse.dekfs  keysource=tpm,nofail,headless,x\-systemd.automount,idle=15min  0 0
/srv/vault.enc  /srv/vault  fuse.dekfs  keysource=ask,x\-systemd.automount  0 0
/srv/vault.enc  /srv/vault  fuse.dekfs  passfile=/etc/dekfs/vault.pass,nofail  0 0
/srv/vault.enc  /srv/vault  fuse.dekfs  keysource=recovery,passfile=/root/vault.rk,noauto  0 0
/home/u/c.enc   /home/u/c   fuse.dekfs  user,noauto,keysource=passphrase  0 0
.fi
.SH EXIT STATUS
The exit status of
.BR "dekfs mount" ;
2 for a usage error or an unknown option.
.SH SEE ALSO
.BR dekfs (1),
.BR dekfs\-mount (1),
.BR dekfs\-format (5),
.BR fstab (5),
.BR systemd.mount (5),
.BR systemd\-ask\-password (1)
"#;

const FORMAT: &str = r#".TH DEKFS-FORMAT 5 "" "dekfs" "File Formats"
.SH NAME
dekfs-format \- on-disk format of a dekfs volume
.SH DESCRIPTION
A dekfs cipher directory holds
.B dekfs.conf
(the volume identity, the wrapped KEKs and their protectors),
one
.B dekfs.dir
per directory (its wrapped directory key), file names encrypted with
AES\-SIV, and one file per plaintext file: a 216\-byte header carrying the
file's wrapped DEK, then 4096\-byte blocks each sealed with 12 bytes of nonce
and 16 bytes of tag.
.PP
Format version 1 is frozen. Every byte is specified in
.BR FORMAT.md ,
shipped in the dekfs source tree as docs/FORMAT.md (and installed under
/usr/local/share/doc/dekfs/ by scripts/install.sh).
.SH SEE ALSO
.BR dekfs (1),
.BR dekfs\-fsck (1)
"#;
