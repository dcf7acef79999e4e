#!/bin/sh
# Installed as /usr/local/sbin/cluster-lab-seed in cluster-lab's VM images (run by cluster-lab-seed.service).
# Copies everything under files/ of the disk labelled "labseed" onto /, keeping each file's mode and
# making root its owner; directories that already exist keep their mode and owner. Then sets the
# running hostname from /etc/hostname and gives that name an /etc/hosts line when it has none.
# Without a seed disk it changes nothing; running it again gives the same result. Few processes on
# purpose: under TCG each one costs a good part of a second at boot.
set -eu

dev=$(blkid -L labseed) || dev=""
if [ -z "$dev" ]; then
    echo "no disk labelled labseed: nothing to copy"
    exit 0
fi

mnt=/run/cluster-lab-seed
mkdir -p "$mnt"
mount -t ext4 -o ro,nodev,nosuid "$dev" "$mnt"
trap 'umount "$mnt"' EXIT

if [ -d "$mnt/files" ]; then
    echo "copying from $dev:"
    # tar rather than cp -a: --no-overwrite-dir leaves existing directories (/root, /etc) as they are
    tar -C "$mnt/files" -cf - . | tar -C / -xvf - --no-same-owner --preserve-permissions --no-overwrite-dir
fi

if [ -s /etc/hostname ]; then
    hostname -F /etc/hostname
    name=$(hostname)
    # sudo and others look their own name up; there is no DNS to ask
    grep -qw -- "$name" /etc/hosts || echo "127.0.1.1	$name" >> /etc/hosts
fi
