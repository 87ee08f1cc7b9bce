// Package container tests Kvorum's container image and compose file on the
// local Docker engine: the image is built from static binaries FROM
// scratch (scripts/image.sh), contrib/docker/docker-compose.yml brings up
// a three-member cluster, and the test stops members and cuts them off the
// network. Without a Docker engine and docker-compose (or `docker
// compose`) the tests skip with a message.
package container
