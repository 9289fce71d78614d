package scenarioutil

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb"
)

// connectTimeout bounds the first round trip to a freshly started server.
const connectTimeout = 15 * time.Second

// DB is an embedded devdb server and a driver client connected to it.
type DB struct {
	// Server is the running devdb instance.
	Server *devdb.Server
	// Client is connected to Server.
	Client *mongo.Client
}

// StartDB starts devdb with opts (the zero value: loopback, free port,
// temporary data directory) and connects a client to it. The caller must
// Close the result.
func StartDB(ctx context.Context, opts devdb.Options) (*DB, error) {
	srv, err := devdb.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start devdb: %w", err)
	}
	client, err := Connect(ctx, srv.URI())
	if err != nil {
		return nil, errors.Join(err, srv.Close())
	}
	return &DB{Server: srv, Client: client}, nil
}

// URI returns the connection string of the server.
func (d *DB) URI() string { return d.Server.URI() }

// Close disconnects the client and stops the server.
func (d *DB) Close(ctx context.Context) error {
	var errs []error
	if err := d.Client.Disconnect(ctx); err != nil {
		errs = append(errs, fmt.Errorf("disconnect from devdb: %w", err))
	}
	if err := d.Server.Close(); err != nil {
		errs = append(errs, fmt.Errorf("stop devdb: %w", err))
	}
	return errors.Join(errs...)
}

// Connect opens a driver client on uri and pings the deployment, so that a
// wrong address fails here rather than on the first write.
func Connect(ctx context.Context, uri string) (*mongo.Client, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetAppName("changehook-example"))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", uri, err)
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := client.Ping(pctx, nil); err != nil {
		return nil, errors.Join(fmt.Errorf("ping %s: %w", uri, err), client.Disconnect(context.WithoutCancel(ctx)))
	}
	return client, nil
}

// Doc builds a document from alternating keys and values:
// Doc("name", "Ada", "age", int32(36)) is
// bson.D{{Key: "name", Value: "Ada"}, {Key: "age", Value: int32(36)}}. Every
// key must be a string (Doc panics otherwise); a trailing key without a
// value is ignored.
func Doc(kv ...any) bson.D {
	d := make(bson.D, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		d = append(d, bson.E{Key: kv[i].(string), Value: kv[i+1]})
	}
	return d
}
